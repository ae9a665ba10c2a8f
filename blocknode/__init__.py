"""The block node: content-addressed chunks in segment files, replicated on the block ring.

- ``segstore``: ``SegmentChunkStore``, the node's store: append-only segment files (pwritev +
  fdatasync, GIL released) indexed by RocksDB, replay after a crash, compaction after deletes.
- ``store``: the ``ChunkStore``/``BlockStore`` protocols, ``RocksChunkStore`` (the store of
  earlier versions, kept to migrate from) and ``MemoryChunkStore`` (tests); ``asyncstore``:
  ``AsyncChunkStore`` (group commit, reads on threads, compaction scheduling); ``cache``: the
  hot-chunk LRU of verified reads.
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
