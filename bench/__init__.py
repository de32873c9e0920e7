"""wsmq's benchmark harness: ``python -m bench`` or ``scripts/bench`` (see docs/bench.md)."""
