"""``tessera cluster params`` and ``tessera cluster set-params``: the block ring's RF, W and vnodes.

The parameters live in etcd next to the ring (``tessera.membership.ClusterParams``); every node
reads them from there and follows a change. These commands talk to etcd directly: whoever can
reach the cluster's etcd administers the cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tessera import membership
from tessera.config import ConfigError, parse_etcd
from tessera.membership import ClusterParams, ParamsError

DEFAULT_ETCD = "http://127.0.0.1:2379"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def add_params_commands(subparsers: Any) -> None:
    """Add ``cluster params`` and ``cluster set-params`` to a ``tessera`` subparsers object."""
    cluster = subparsers.add_parser(
        "cluster",
        help="the cluster's replication parameters (RF, W, vnodes) in etcd",
        description="Show or change the block ring's parameters, which every node reads from etcd.",
    )
    sub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    show = sub.add_parser("params", help="show RF, W and vnodes")
    _etcd_flags(show)
    show.set_defaults(func=cmd_params)
    change = sub.add_parser(
        "set-params",
        help="change RF, W or vnodes (block nodes follow at once and re-place chunks)",
        description="Change the cluster's parameters in etcd. Running block nodes follow at once: "
        "a new RF or vnodes re-places chunks (the replicator copies them to their new owners). "
        "Nodes started later with --replicas/--write-quorum/--vnodes flags must use the new values.",
    )
    _etcd_flags(change)
    change.add_argument(
        "--replicas", type=_positive, default=0, metavar="RF", help="replication factor"
    )
    change.add_argument(
        "--write-quorum",
        type=_positive,
        default=0,
        metavar="W",
        help="copies durable before a put is acknowledged",
    )
    change.add_argument(
        "--vnodes", type=_positive, default=0, metavar="N", help="ring points per unit of weight"
    )
    change.set_defaults(func=cmd_set_params)


def _etcd_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--etcd",
        default=None,
        metavar="URL",
        help="etcd endpoints [default: $TESSERA_ETCD, else the etcd of the local cluster in --dir, "
        f"else {DEFAULT_ETCD}]",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="local cluster directory (tessera up) [default: $TESSERA_CLUSTER_DIR or ./.tessera/cluster]",
    )


def _etcd_url(args: argparse.Namespace) -> str:
    if args.etcd:
        return str(args.etcd)
    if os.environ.get("TESSERA_ETCD"):
        return os.environ["TESSERA_ETCD"]
    cluster_dir = args.dir or Path(os.environ.get("TESSERA_CLUSTER_DIR") or ".tessera/cluster")
    try:
        state = json.loads((cluster_dir / "cluster.json").read_text())
    except (OSError, ValueError):
        return DEFAULT_ETCD
    return str(state.get("etcd") or DEFAULT_ETCD)


def _describe(params: ClusterParams) -> str:
    return f"RF={params.replicas} W={params.write_quorum} vnodes={params.vnodes}"


def _fail(message: str) -> int:
    print(f"tessera: {message}", file=sys.stderr)
    return 1


def cmd_params(args: argparse.Namespace) -> int:
    """``tessera cluster params``."""
    url = _etcd_url(args)
    try:
        params = membership.run_with_etcd(parse_etcd(url), membership.read_params)
    except (ConfigError, ParamsError) as e:
        return _fail(str(e))
    except Exception as e:  # aetcd's errors
        return _fail(f"cannot reach etcd at {url}: {e}")
    if params is None:
        print(
            "no cluster parameters in etcd yet (the first block node or tessera up publishes them)"
        )
    else:
        print(_describe(params))
    return 0


def cmd_set_params(args: argparse.Namespace) -> int:
    """``tessera cluster set-params``."""
    if not (args.replicas or args.write_quorum or args.vnodes):
        return _fail("nothing to change: give --replicas, --write-quorum or --vnodes")
    url = _etcd_url(args)
    try:
        before, after = membership.run_with_etcd(
            parse_etcd(url),
            lambda etcd: membership.set_params(etcd, args.replicas, args.write_quorum, args.vnodes),
        )
    except (ConfigError, ParamsError) as e:
        return _fail(str(e))
    except Exception as e:  # aetcd's errors
        return _fail(f"cannot reach etcd at {url}: {e}")
    was = _describe(before) if before else "unset"
    print(f"cluster parameters: {_describe(after)} (was {was})")
    return 0
