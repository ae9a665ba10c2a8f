"""One frozen config per node, built from flags and ``TESSERA_*`` environment variables.

Every field of a config dataclass is both a flag (``--write-quorum``) and an environment variable
(``TESSERA_WRITE_QUORUM``); a flag wins over the environment, the environment over the default
in code. ``validated()`` checks the whole config once at start.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar, get_type_hints

ENV_PREFIX = "TESSERA_"
MiB = 1024 * 1024

# Ports a node listens on by default (and that containers expose).
BLOCK_PORT = 7100
SYNC_PORT = 7300
META_PORT = 7420
WEB_PORT = 7480  # the web gateway (HTTP), python -m web
METRICS_PORT = 9100
DEFAULT_META_ENDPOINT = f"127.0.0.1:{META_PORT}"


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the flag."""


def parse_etcd(text: str) -> list[tuple[str, int]]:
    """Parse comma-separated etcd endpoints (``http://host:port``) into (host, port) pairs."""
    out = []
    for raw in text.split(","):
        hostport = raw.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
        if not hostport:
            continue
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--etcd: {raw!r} is not host:port")
        out.append((host, int(port)))
    if not out:
        raise ConfigError("--etcd: no endpoint given")
    return out


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class NodeConfig:
    """What every node kind shares."""

    node_id: str = field(
        default="", metadata=_help("stable node id (default: derived from kind, host and port)")
    )
    listen: str = field(
        default="127.0.0.1:0", metadata=_help("gRPC listen address host:port (port 0 picks one)")
    )
    advertise: str = field(
        default="",
        metadata=_help(
            "address other parts use to reach this node (default: the bound listen address)"
        ),
    )
    metrics_listen: str = field(
        default="127.0.0.1:0", metadata=_help("Prometheus /metrics HTTP address; empty disables")
    )
    etcd: str = field(
        default="http://127.0.0.1:2379", metadata=_help("etcd endpoints, comma-separated")
    )
    cluster_secret: str = field(
        default="",
        metadata=_help("shared secret for node credentials, receipts and tickets (required)"),
    )
    zone: str = field(default="default", metadata=_help("failure zone of this node"))
    ready_file: str = field(
        default="", metadata=_help("write bound addresses as JSON here once serving")
    )
    log_level: str = field(default="INFO", metadata=_help("DEBUG, INFO, WARNING or ERROR"))
    log_json: bool = field(default=False, metadata=_help("structured JSON log lines"))
    tls_cert: str = field(default="", metadata=_help("PEM certificate: serve TLS when set"))
    tls_key: str = field(default="", metadata=_help("PEM private key for --tls-cert"))
    tls_ca: str = field(default="", metadata=_help("PEM CA bundle to verify other nodes"))
    tls_server_name: str = field(
        default="",
        metadata=_help("name to verify in peers' TLS certificates (default: the host dialled)"),
    )
    max_message_bytes: int = field(default=6 * MiB, metadata=_help("largest gRPC message accepted"))
    lease_ttl: int = field(default=5, metadata=_help("etcd lease TTL in seconds (liveness)"))
    grace_stop: float = field(
        default=5.0, metadata=_help("seconds to finish in-flight RPCs on SIGTERM")
    )

    kind: str = field(default="node", init=False, metadata={"flag": False})
    # The fields set by a flag or a TESSERA_* variable rather than left at their default.
    given: frozenset[str] = field(default=frozenset(), metadata={"flag": False})

    def etcd_endpoints(self) -> list[tuple[str, int]]:
        """Parse ``--etcd`` into (host, port) pairs."""
        return parse_etcd(self.etcd)

    def validated(self) -> Self:
        """Check values that would otherwise fail later and obscurely."""
        if not self.cluster_secret or len(self.cluster_secret) < 16:
            raise ConfigError(
                "--cluster-secret (TESSERA_CLUSTER_SECRET) must be set, at least 16 characters"
            )
        _split_hostport("--listen", self.listen)
        if self.metrics_listen:
            _split_hostport("--metrics-listen", self.metrics_listen)
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(
                f"--log-level: {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR"
            )
        if self.max_message_bytes < 5 * MiB:
            raise ConfigError(
                "--max-message-bytes must be at least 5 MiB (a 4 MiB chunk and its header)"
            )
        self.etcd_endpoints()
        return self


@dataclass(frozen=True)
class BlockConfig(NodeConfig):
    """A block node: chunk store and replication."""

    listen: str = field(
        default=f"127.0.0.1:{BLOCK_PORT}", metadata=_help("gRPC listen address host:port")
    )
    data_dir: str = field(
        default="data/block", metadata=_help("data directory (chunk segments, index)")
    )
    # The cluster's parameters live in etcd (tessera.membership.ClusterParams): these three seed
    # a new cluster, and when given (flag or variable) must agree with the cluster's.
    replicas: int = field(
        default=3,
        metadata=_help("replication factor RF for a new cluster; if given, must be the cluster's"),
    )
    write_quorum: int = field(
        default=2,
        metadata=_help(
            "replicas durable before a put is acknowledged (W) for a new cluster;"
            " if given, must be the cluster's"
        ),
    )
    vnodes: int = field(
        default=0,
        metadata=_help(
            "ring points per unit of weight for a new cluster (0: 8192);"
            " if given, must be the cluster's"
        ),
    )
    weight: float = field(default=1.0, metadata=_help("relative capacity of this node on the ring"))
    receipt_ttl: int = field(default=86400, metadata=_help("seconds a chunk receipt stays valid"))
    down_grace: int = field(
        default=600, metadata=_help("seconds a node may be down before it is decommissioned")
    )
    scrub_rate_mb: float = field(
        default=20.0, metadata=_help("scrubber re-hash rate in MB/s (0 disables)")
    )
    rebalance_rate_mb: float = field(
        default=50.0, metadata=_help("rebalance/repair transfer limit in MB/s")
    )
    repair_interval: float = field(
        default=60.0,
        metadata=_help(
            "seconds between replication passes (hint delivery, rebalance, anti-entropy);"
            " a ring change or a node coming back starts one at once"
        ),
    )
    scrub_interval: float = field(
        default=3600.0,
        metadata=_help("seconds the scrubber rests after re-hashing every chunk once"),
    )
    cache_mb: int = field(
        default=64, metadata=_help("hot-chunk read cache in MiB (verified chunks; 0 disables)")
    )

    kind: str = field(default="block", init=False, metadata={"flag": False})

    def validated(self) -> Self:
        super().validated()
        if not 1 <= self.write_quorum <= self.replicas:
            raise ConfigError("--write-quorum must be between 1 and --replicas")
        if self.vnodes < 0:
            raise ConfigError("--vnodes must be >= 0 (0: the default)")
        if self.weight <= 0:
            raise ConfigError("--weight must be positive")
        if self.repair_interval <= 0 or self.scrub_interval <= 0:
            raise ConfigError("--repair-interval and --scrub-interval must be positive")
        if self.down_grace < 0:
            raise ConfigError("--down-grace must be >= 0")
        if self.cache_mb < 0:
            raise ConfigError("--cache-mb must be >= 0 (0 disables the cache)")
        return self


@dataclass(frozen=True)
class MetaConfig(NodeConfig):
    """A metadata node: stateless over CockroachDB/PostgreSQL."""

    listen: str = field(
        default=f"127.0.0.1:{META_PORT}", metadata=_help("gRPC listen address host:port")
    )
    db: str = field(
        default="postgresql://postgres@127.0.0.1:5432/tessera",
        metadata=_help("PostgreSQL or CockroachDB DSN"),
    )
    db_pool_min: int = field(default=1, metadata=_help("minimum database connections"))
    db_pool_max: int = field(default=16, metadata=_help("maximum database connections"))
    token_ttl: int = field(default=30 * 86400, metadata=_help("seconds a login token stays valid"))
    ticket_ttl: int = field(default=3600, metadata=_help("seconds a read ticket stays valid"))
    journal_retention: int = field(
        default=90 * 86400, metadata=_help("seconds the journal keeps entries")
    )
    revision_retention: int = field(
        default=30 * 86400, metadata=_help("seconds old revisions are kept")
    )
    gc_grace: int = field(
        default=86400, metadata=_help("seconds an unreferenced chunk is kept before GC")
    )
    migrate_only: bool = field(default=False, metadata=_help("apply schema migrations and exit"))

    kind: str = field(default="meta", init=False, metadata={"flag": False})

    def validated(self) -> Self:
        if self.migrate_only:
            if not self.db:
                raise ConfigError("--db is required")
            return self
        super().validated()
        if not self.db:
            raise ConfigError("--db is required")
        if self.db_pool_max < max(1, self.db_pool_min):
            raise ConfigError("--db-pool-max must be at least --db-pool-min")
        return self


@dataclass(frozen=True)
class SyncConfig(NodeConfig):
    """A sync node: change streams to devices."""

    listen: str = field(
        default=f"127.0.0.1:{SYNC_PORT}", metadata=_help("gRPC listen address host:port")
    )
    meta: str = field(
        default=DEFAULT_META_ENDPOINT,
        metadata=_help("metanode address (or its Service) to read journals from"),
    )
    heartbeat: float = field(
        default=10.0, metadata=_help("seconds between heartbeats on an idle stream")
    )
    poll_interval: float = field(
        default=30.0, metadata=_help("seconds between slow polls of namespace heads")
    )
    queue_limit: int = field(
        default=10000, metadata=_help("events buffered per stream before it is told to resume")
    )

    kind: str = field(default="sync", init=False, metadata={"flag": False})


C = TypeVar("C", bound=NodeConfig)


def _split_hostport(flag: str, value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{flag}: {value!r} is not host:port")
    return host.strip("[]"), int(port)


def _flag_fields(cls: type[NodeConfig]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("flag", True)]


def _parse_value(kind: Any, raw: str, name: str) -> Any:
    try:
        if kind is bool:
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a valid {kind.__name__}") from None
    return raw


def build_parser(cls: type[NodeConfig], prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per config field; each help names its env variable."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = get_type_hints(cls)
    for f in _flag_fields(cls):
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        text = f"{f.metadata.get('help', '')} [env {env}; default {f.default!r}]"
        if hints[f.name] is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=text)
    return parser


def load(
    cls: type[C],
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    environ: dict[str, str] | None = None,
) -> C:
    """Build a config: defaults, then ``TESSERA_*`` variables, then flags. Raises ConfigError."""
    env = os.environ if environ is None else environ
    args = build_parser(cls, prog, description).parse_args(argv)
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in _flag_fields(cls):
        env_name = ENV_PREFIX + f.name.upper()
        flag_value = getattr(args, f.name)
        if flag_value is not None:
            values[f.name] = (
                flag_value
                if isinstance(flag_value, bool)
                else _parse_value(hints[f.name], flag_value, "--" + f.name.replace("_", "-"))
            )
        elif env_name in env:
            values[f.name] = _parse_value(hints[f.name], env[env_name], env_name)
    return cls(**values, given=frozenset(values)).validated()
