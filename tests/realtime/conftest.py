"""Fixtures for the realtime tests: the queue layer's ``queues`` and ``raw`` clients."""

from tests.queue.conftest import queues, raw

__all__ = ["queues", "raw"]
