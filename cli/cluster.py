"""``tessera up`` and ``tessera down``: a whole local cluster in one command.

``add_cluster_commands(subparsers)`` plugs both into the ``tessera`` CLI; ``python -m
cli.cluster up|down`` runs them on their own.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from cli import userconfig
from devcluster import ClusterError, LocalCluster, stop_from_file
from tessera.config import META_PORT, WEB_PORT
from tessera.membership import DEFAULT_PARAMS, ClusterParams

DEFAULT_DIR = Path(".tessera") / "cluster"


class _Stop(Exception):
    """Raised in the main thread by SIGTERM (SIGINT raises KeyboardInterrupt)."""


def default_dir() -> Path:
    """``$TESSERA_CLUSTER_DIR``, else ``.tessera/cluster`` under the current directory."""
    return Path(os.environ.get("TESSERA_CLUSTER_DIR") or DEFAULT_DIR)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def add_cluster_commands(subparsers: Any) -> None:
    """Add ``up`` and ``down`` to a ``tessera`` subparsers object."""
    up = subparsers.add_parser(
        "up",
        help="run a whole local cluster (etcd, PostgreSQL, nodes)",
        description="Start etcd, PostgreSQL and the nodes as local processes, create an admin account and "
        "save its token in your config. Runs until Ctrl-C unless --detach.",
    )
    up.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="cluster directory [default: $TESSERA_CLUSTER_DIR or ./.tessera/cluster]",
    )
    up.add_argument(
        "--block-nodes", type=_count, default=3, metavar="N", help="block nodes [default: 3]"
    )
    up.add_argument(
        "--sync-nodes", type=_count, default=1, metavar="N", help="sync nodes [default: 1]"
    )
    up.add_argument(
        "--meta-nodes", type=_count, default=1, metavar="N", help="metanodes [default: 1]"
    )
    up.add_argument(
        "--meta-port",
        type=_count,
        default=META_PORT,
        metavar="PORT",
        help=f"the first metanode's port; 0: the previous run's if free, else any [default: {META_PORT}]",
    )
    up.add_argument(
        "--web-port",
        type=_count,
        default=WEB_PORT,
        metavar="PORT",
        help=f"the web interface's port; 0 picks one [default: {WEB_PORT}]",
    )
    up.add_argument("--no-web", action="store_true", help="do not start the web interface")
    up.add_argument(
        "--etcd", default=None, metavar="URL", help="use this etcd instead of starting one"
    )
    up.add_argument(
        "--db",
        default=None,
        metavar="DSN",
        help="use this PostgreSQL or CockroachDB instead of starting PostgreSQL",
    )
    for flag, metavar, text in (
        ("--replicas", "RF", "replication factor"),
        ("--write-quorum", "W", "copies durable before a put is acknowledged"),
        ("--vnodes", "N", "ring points per unit of weight"),
    ):
        up.add_argument(
            flag,
            type=_count,
            default=0,
            metavar=metavar,
            help=f"{text}, for a new cluster (change it later with tessera cluster set-params) "
            "[default: 3, 2 and 8192; an existing cluster's own]",
        )
    up.add_argument(
        "--detach", action="store_true", help="return once healthy and leave the cluster running"
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds each start phase may take [default: 60]",
    )
    up.set_defaults(func=cmd_up)

    down = subparsers.add_parser(
        "down",
        help="stop the local cluster that tessera up started",
        description="Stop every process of a local cluster.",
    )
    down.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="cluster directory [default: $TESSERA_CLUSTER_DIR or ./.tessera/cluster]",
    )
    down.set_defaults(func=cmd_down)


def _error(message: str, detail: str = "") -> int:
    print(f"tessera: {message}", file=sys.stderr)
    for line in detail.splitlines():
        print(f"  | {line}", file=sys.stderr)
    return 1


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into ``_Stop`` in the main thread for the duration."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Let a stop in progress finish: ignore SIGINT and SIGTERM meanwhile."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _dir_hint(cluster_dir: Path) -> str:
    return "" if cluster_dir == default_dir() else f" --dir {cluster_dir}"


def _usage(cluster: LocalCluster, cluster_dir: Path, saved: Path | None, detach: bool) -> str:
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    counts = ", ".join(
        [
            plural(len(cluster.meta_addresses), "metanode"),
            plural(len(cluster.block_addresses), "block node"),
            plural(len(cluster.sync_addresses), "sync node"),
        ]
    )
    endpoint = cluster.meta_address
    override = os.environ.get("TESSERA_ENDPOINT", "")
    endpoint_note = (
        f"   (note: TESSERA_ENDPOINT={override} overrides it)"
        if override and override != endpoint
        else ""
    )
    stop = f"tessera down{_dir_hint(cluster_dir)}" + ("" if detach else "   (or Ctrl-C here)")
    lines = [
        f"Tessera is up: {counts}; healthy in {cluster.healthy_after:.1f} s.",
        f"  endpoint  {endpoint}{endpoint_note}",
        f"  web       {cluster.web_url}   (log in with a user's name and password)"
        if cluster.web_url
        else "  web       (not started)",
        f"  admin     logged in as admin: token saved to {saved}; "
        f"password in {cluster.dir / 'admin.json'}"
        if saved
        else "  admin     (no token: bootstrap skipped)",
        f"  cluster   {cluster.state_path}",
        f"  logs      {cluster.logs_dir}/",
        "  metrics   (Prometheus, every node)",
        *(
            f"    {node['name']:<9} http://{node['metrics']}/metrics"
            for kind in ("meta", "block", "sync")
            for node in cluster.nodes(kind)
            if node.get("metrics")
        ),
        "",
        "Try:" + activate_hint(),
        *(
            f"  {command_hint()} {c}"
            for c in (
                "user add alice",
                "login alice --switch   (replaces admin here; log back in as admin the same way)",
                "put ./notes.txt /notes.txt",
                "ls",
                "status                 (as admin: every node, probed now)",
            )
        ),
        f"  {command_hint()} {stop.removeprefix('tessera ')}",
    ]
    return "\n".join(lines)


def command_hint() -> str:
    """How to type ``tessera`` here: bare when that is the one on the PATH, else the path of the
    one running (``.venv/bin/tessera`` after ``make up``), else the console script beside this
    Python, else ``python -m cli``."""
    here = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    on_path = shutil.which("tessera")
    if here is not None and here.name == "tessera" and here.exists():
        if on_path and Path(on_path).resolve() == here.resolve():
            return "tessera"
        return str(here) if here.is_absolute() or "/" in str(here) else f"./{here}"
    if on_path:
        return "tessera"
    beside = Path(sys.executable).parent / "tessera"  # the venv's console script
    if beside.exists():
        return str(beside)
    return f"{sys.executable} -m cli"


def activate_hint() -> str:
    """A note on putting ``tessera`` on the PATH, when it is not there yet."""
    hint = command_hint()
    if hint == "tessera" or not hint.endswith("/tessera"):
        return ""
    return f"   (or `source {Path(hint).parent}/activate` once, then just `tessera`)"


def _save_admin(cluster: LocalCluster) -> Path | None:
    if not cluster.admin_token:
        return None
    current = userconfig.load()
    return userconfig.save(
        dataclasses.replace(
            current,
            endpoint=cluster.meta_address,
            token=cluster.admin_token,
            user="admin",
            web_url=cluster.web_url,
        )
    )


def _watch(cluster: LocalCluster) -> None:
    """Wait for Ctrl-C/SIGTERM, reporting processes that exit; return when none is left."""
    reported: set[str] = set()
    while True:
        time.sleep(0.5)
        for name, code, log_path in cluster.exited():
            if name not in reported:
                reported.add(name)
                print(f"tessera: {name} exited with code {code}; see {log_path}", file=sys.stderr)
        if not cluster.pids():
            print("tessera: every process of the cluster has exited", file=sys.stderr)
            return


def _params(args: argparse.Namespace) -> ClusterParams | None:
    """The parameters ``tessera up`` was asked for (None: none given)."""
    if not (args.replicas or args.write_quorum or args.vnodes):
        return None
    return DEFAULT_PARAMS.with_overrides(args.replicas, args.write_quorum, args.vnodes)


def cmd_up(args: argparse.Namespace) -> int:
    """``tessera up``: start a local cluster; wait in the foreground unless --detach."""
    cluster_dir = args.dir or default_dir()
    cluster: LocalCluster | None = None
    try:
        with _sigterm_raises():
            print(f"starting a local cluster in {cluster_dir} ...", file=sys.stderr, flush=True)
            cluster = LocalCluster.start(
                cluster_dir,
                block_nodes=args.block_nodes,
                sync_nodes=args.sync_nodes,
                meta_nodes=args.meta_nodes,
                etcd_url=args.etcd,
                db_dsn=args.db,
                meta_port=args.meta_port,
                detach=args.detach,
                timeout=args.timeout,
                params=_params(args),
                web_port=None if args.no_web else args.web_port,
            )
            saved = _save_admin(cluster)
            print(_usage(cluster, cluster_dir, saved, args.detach), flush=True)
            if not args.detach:
                _watch(cluster)
        return 0
    except ClusterError as e:
        return _error(str(e), e.detail)
    except (KeyboardInterrupt, _Stop):
        print("\nstopping ...", file=sys.stderr, flush=True)
        return 0 if cluster is not None else 130
    except OSError as e:
        return _error(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
    finally:
        if cluster is not None and not args.detach:
            with _signals_ignored():
                cluster.stop()
            print("stopped.", file=sys.stderr)


def cmd_down(args: argparse.Namespace) -> int:
    """``tessera down``: stop the cluster recorded in ``DIR/cluster.json``."""
    cluster_dir = args.dir or default_dir()
    try:
        stopped = stop_from_file(cluster_dir)
    except ClusterError as e:
        return _error(str(e))
    except OSError as e:
        return _error(str(e))
    if stopped:
        print(f"stopped {len(stopped)} processes: {', '.join(stopped)}")
    else:
        print(f"nothing was running in {cluster_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m cli.cluster up|down``."""
    parser = argparse.ArgumentParser(prog="tessera")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_cluster_commands(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
