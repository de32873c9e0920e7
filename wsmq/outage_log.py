"""Old home of :class:`wsmq.logs.OutageLog` (kept so existing imports work)."""

from __future__ import annotations

from wsmq.logs import OUTAGE_REPORT_EVERY as REPORT_EVERY
from wsmq.logs import OutageLog

__all__ = ["REPORT_EVERY", "OutageLog"]
