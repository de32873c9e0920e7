"""Benchmark peers: the programs wsmq is measured against (see docs/bench.md)."""
