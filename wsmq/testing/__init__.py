"""Test and benchmark infrastructure: private Redis processes, clusters, Sentinel, nodes."""
