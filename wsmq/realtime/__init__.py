"""Realtime notifications: one listener per node for RSMQ's ``{ns}:rt:{q}`` publishes."""

from wsmq.realtime.listener import Callback, RealtimeListener

__all__ = ["Callback", "RealtimeListener"]
