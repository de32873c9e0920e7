"""Chaos and soak suites: wsmq under real faults (issue #7 items 3-4); see docs/chaos.md."""
