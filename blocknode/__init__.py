"""The block node: content-addressed chunks in RocksDB, replicated on the block ring.

``store`` holds chunks (``RocksChunkStore``, ``MemoryChunkStore`` for tests), ``service`` is
the Block gRPC service (puts with replication, ticketed reads with repair), ``app`` plugs both
into the shared node bootstrap, and ``python -m blocknode`` (console script ``blocknode``) runs
one node.
"""
