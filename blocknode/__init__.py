"""The block node: content-addressed chunks in RocksDB, replicated on the block ring.

- ``store``: the ``ChunkStore``/``BlockStore`` protocols, ``RocksChunkStore`` and
  ``MemoryChunkStore`` (tests); ``asyncstore``: ``AsyncChunkStore`` (group commit, reads on
  threads).
- ``storeproc``: ``ProcessChunkStore``, the RocksDB store in a child process (rocksdict holds
  the GIL through every call; the node's event loop must not wait on it).
- ``placement``: the ring as this node sees it, replica sets and hinted-handoff pairing;
  ``ranges``: ring owners per chunk and digests of the ranges two replicas share.
- ``service``: the Block gRPC service (puts with replication, ticketed reads with repair,
  node-only calls); ``peers`` (calls to other nodes) and ``metrics``; ``gcguard`` keeps
  collected chunks from coming back.
- ``replicator``: the loop that delivers hints, moves misplaced copies and runs anti-entropy;
  ``scrubber``: re-hashes stored chunks; ``decommission``: removal of nodes down past their grace;
  ``ratelimit``: pacing of all three.
- ``app``: the ``NodeApp`` (store, service, etcd
  registration and ring watch, background loops).

``python -m blocknode`` (console script ``blocknode``) runs one node. ``docs/blocks.md``
describes the replication protocol as a whole.
"""
