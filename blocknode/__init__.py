"""The block node: content-addressed chunks in RocksDB, replicated on the block ring.

- ``store``: the ``ChunkStore``/``BlockStore`` protocols, ``RocksChunkStore`` and
  ``MemoryChunkStore`` (tests); ``asyncstore``: ``AsyncChunkStore`` (group commit, reads on
  threads).
- ``storeproc``: ``ProcessChunkStore``, the RocksDB store in a child process (rocksdict holds
  the GIL through every call; the node's event loop must not wait on it).
- ``placement``: the ring as this node sees it, replica sets and hinted-handoff pairing.
- ``service``: the Block gRPC service (puts with replication, ticketed reads with repair,
  node-only calls); ``peers`` and ``metrics`` are its channels and Prometheus metrics.
- ``app``: the ``NodeApp`` (store, service, etcd registration and ring watch).

``python -m blocknode`` (console script ``blocknode``) runs one node.
"""
