"""Test and benchmark infrastructure: private Redis processes, clusters and Sentinel
(``redisproc``, ``redisproc_cluster``), the one node launcher (``nodes``) and ``make_users``
(``users``). The product packages never import it; ``wsmq demo`` does."""
