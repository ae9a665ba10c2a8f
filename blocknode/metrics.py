"""The block node's Prometheus metrics, built once and registered on the node's registry."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


def store_usage(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(files, bytes) by ``file_kind`` under ``path``; zeros if it is missing."""
    files: dict[str, int] = dict.fromkeys(("segment", "table", "blob", "wal", "other"), 0)
    sizes = dict(files)
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                size = os.stat(os.path.join(root, name)).st_size
            except OSError:  # compacted away meanwhile
                continue
            kind = file_kind(name)
            files[kind] += 1
            sizes[kind] += size
    return files, sizes


def dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (what a node's store takes on disk); 0 if missing."""
    return sum(store_usage(path)[1].values())


def file_kind(name: str) -> str:
    """What a file of the chunk store is: ``segment`` (chunk bytes, appended), ``table``
    (RocksDB sorted tables: the index), ``blob`` (RocksDB blob files of the legacy store),
    ``wal`` (write-ahead log), or ``other`` (manifest, options)."""
    if name.endswith(".seg"):
        return "segment"
    if name.endswith(".sst"):
        return "table"
    if name.endswith(".blob"):
        return "blob"
    if name.endswith(".log") and name != "LOG":
        return "wal"
    return "other"


class _StoreCollector(Collector):
    """The chunk store's files by kind, its bytes on disk, and the disk's free space: one walk
    of the store per scrape."""

    def __init__(self, data_dir: Path, store_dir: Path) -> None:
        self._data_dir, self._store_dir = data_dir, store_dir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        files, sizes = store_usage(self._store_dir)
        yield GaugeMetricFamily(
            "tessera_block_store_bytes",
            "Bytes the chunk store takes on disk (chunks, index, write-ahead log)",
            value=sum(sizes.values()),
        )
        by_kind = GaugeMetricFamily(
            "tessera_block_store_files",
            "Files of the chunk store by kind (segment, table, blob, wal, other)",
            labels=["kind"],
        )
        kind_bytes = GaugeMetricFamily(
            "tessera_block_store_file_bytes",
            "Bytes of the chunk store by file kind",
            labels=["kind"],
        )
        for kind in files:
            by_kind.add_metric([kind], files[kind])
            kind_bytes.add_metric([kind], sizes[kind])
        yield by_kind
        yield kind_bytes
        free, total = disk_usage(self._data_dir)
        yield GaugeMetricFamily(
            "tessera_block_disk_free_bytes",
            "Free bytes on the file system of the data directory",
            value=free,
        )
        yield GaugeMetricFamily(
            "tessera_block_disk_total_bytes",
            "Size of the file system of the data directory",
            value=total,
        )


def disk_usage(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the file system holding ``path`` (0, 0 when it cannot be read)."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return 0, 0
    return usage.free, usage.total


class _CacheCollector(Collector):
    """The hot-chunk cache's hits, misses and size, read from the cache when scraped."""

    def __init__(self, stats: Callable[[], tuple[int, int, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        hits, misses, size = self._stats()
        yield CounterMetricFamily(
            "tessera_block_cache_hits", "Chunk reads served from the hot-chunk cache", value=hits
        )
        yield CounterMetricFamily(
            "tessera_block_cache_misses", "Chunk reads the hot-chunk cache missed", value=misses
        )
        yield GaugeMetricFamily(
            "tessera_block_cache_bytes", "Bytes held by the hot-chunk cache", value=size
        )


class BlockMetrics:
    """Chunks stored, bytes in/out, puts/gets, replication, repair, rebalance and scrubbing.

    The figures ``NodeStatus`` reports are also kept as plain numbers (``under_replicated``,
    ``transferred``, ``scrubbed``, ``corrupt_seen``, ``last_pass_at``).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        chunk_count: Callable[[], float],
        hint_count: Callable[[], float],
        cache_stats: Callable[[], tuple[int, int, int]] | None = None,
    ) -> None:
        if cache_stats is not None:
            registry.register(_CacheCollector(cache_stats))
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
            "Chunks that failed their hash check when read (reads and scrubber)",
            registry=registry,
        )
        self.repairs = Counter(
            "tessera_block_repairs",
            "Chunks fetched from a replica and rewritten here",
            registry=registry,
        )
        self.under_replicated_gauge = Gauge(
            "tessera_block_under_replicated_chunks",
            "Chunks this node counts as having fewer live copies on their ring owners than RF "
            "(as of the last replication pass; each chunk counted by one node)",
            registry=registry,
        )
        self._transfer = {
            kind: Counter(
                f"tessera_block_{kind}_bytes",
                text,
                registry=registry,
            )
            for kind, text in (
                (
                    "repair",
                    "Chunk bytes copied to a ring owner that lacked them (anti-entropy, "
                    "re-replication after a node loss)",
                ),
                (
                    "rebalance",
                    "Chunk bytes moved to nodes that joined, or off nodes that no longer own them",
                ),
                ("handoff", "Chunk bytes of hinted-handoff copies delivered to their owner"),
            )
        }
        self.dropped = Counter(
            "tessera_block_copies_dropped",
            "Copies deleted here once every ring owner held the chunk (handoff, rebalance)",
            registry=registry,
        )
        self.scrubbed_counter = Counter(
            "tessera_block_scrubbed_chunks", "Chunks re-hashed by the scrubber", registry=registry
        )
        self.scrub_bytes = Counter(
            "tessera_block_scrubbed_bytes", "Bytes re-hashed by the scrubber", registry=registry
        )
        self.passes = Counter(
            "tessera_block_replication_passes",
            "Replication passes (handoff, rebalance, anti-entropy) completed",
            registry=registry,
        )
        self.last_pass_gauge = Gauge(
            "tessera_block_last_pass_timestamp_seconds",
            "When the last replication pass ended",
            registry=registry,
        )
        self.decommissions = Counter(
            "tessera_block_decommissions",
            "Nodes this node removed from the ring after their down grace",
            registry=registry,
        )
        self.scrub_progress = Gauge(
            "tessera_block_scrub_progress_ratio",
            "How far the current scrub pass is through the hash space (0 to 1)",
            registry=registry,
        )
        self.scrub_passes = Counter(
            "tessera_block_scrub_passes", "Scrub passes completed", registry=registry
        )
        self._registry = registry
        self.address = ""  # where /metrics is served, once bound
        self.under_replicated = 0
        self.transferred = dict.fromkeys(self._transfer, 0)
        self.scrubbed = 0
        self.corrupt_seen = 0
        self.last_pass_at = 0.0

    def transfer(self, kind: str, nbytes: int) -> None:
        """Count background bytes sent: ``repair``, ``rebalance`` or ``handoff``."""
        self._transfer[kind].inc(nbytes)
        self.transferred[kind] += nbytes
        self.bytes_out.labels(kind).inc(nbytes)

    def transfer_in(self, kind: str, nbytes: int) -> None:
        """Count background bytes fetched from a peer (a repair pulls its copy)."""
        self._transfer[kind].inc(nbytes)
        self.transferred[kind] += nbytes
        self.bytes_in.labels(kind).inc(nbytes)

    def found_corrupt(self) -> None:
        """Count a copy found corrupt here."""
        self.corrupt.inc()
        self.corrupt_seen += 1

    def set_under_replicated(self, count: int) -> None:
        """Publish the last pass's under-replicated count."""
        self.under_replicated = count
        self.under_replicated_gauge.set(count)

    def pass_done(self, at: float) -> None:
        """Record the end of a replication pass (unix seconds)."""
        self.passes.inc()
        self.last_pass_at = at
        self.last_pass_gauge.set(at)

    def scrubbed_one(self, nbytes: int, chunk_hash: bytes = b"") -> None:
        """Count one chunk re-hashed by the scrubber (its hash tells how far the pass is)."""
        self.scrubbed += 1
        self.scrubbed_counter.inc()
        self.scrub_bytes.inc(nbytes)
        if chunk_hash:
            self.scrub_progress.set(int.from_bytes(chunk_hash[:8], "big") / 2**64)

    def scrub_pass_done(self) -> None:
        """A scrub pass reached the end of the hash space."""
        self.scrub_passes.inc()
        self.scrub_progress.set(1.0)

    def watch_disk(self, data_dir: Path, store_dir: Path) -> None:
        """Store and disk figures, read from the file system at scrape time."""
        self._registry.register(_StoreCollector(data_dir, store_dir))
