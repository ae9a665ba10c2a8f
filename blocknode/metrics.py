"""The block node's Prometheus metrics, built once and registered on the node's registry."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class BlockMetrics:
    """Chunks stored, bytes in/out, puts/gets, replication and repair counters."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        chunk_count: Callable[[], float],
        hint_count: Callable[[], float],
    ) -> None:
        self.chunks_stored = Gauge(
            "tessera_block_chunks_stored", "Chunks held by this node", registry=registry
        )
        self.chunks_stored.set_function(chunk_count)
        self.handoff_backlog = Gauge(
            "tessera_block_handoff_backlog",
            "Hinted-handoff copies held here for nodes that were down",
            registry=registry,
        )
        self.handoff_backlog.set_function(hint_count)
        self.bytes_in = Counter(
            "tessera_block_bytes_in", "Chunk bytes received", ["source"], registry=registry
        )
        self.bytes_out = Counter(
            "tessera_block_bytes_out", "Chunk bytes sent", ["dest"], registry=registry
        )
        self.puts = Counter(
            "tessera_block_chunk_puts", "Chunks stored, by source", ["source"], registry=registry
        )
        self.gets = Counter(
            "tessera_block_chunk_gets",
            "Chunks served, by where they came from",
            ["source"],
            registry=registry,
        )
        self.replication_failures = Counter(
            "tessera_block_replication_failures",
            "Replica writes to peers that failed",
            registry=registry,
        )
        self.replication_queue = Gauge(
            "tessera_block_replication_queue",
            "Replica writes and repairs still running after the put was acknowledged",
            registry=registry,
        )
        self.corrupt = Counter(
            "tessera_block_corrupt_chunks",
            "Chunks that failed their hash check when read",
            registry=registry,
        )
        self.repairs = Counter(
            "tessera_block_repairs",
            "Chunks fetched from a replica and rewritten here",
            registry=registry,
        )
