"""Scale-out: connection URLs, Redis Cluster, Sentinel."""
