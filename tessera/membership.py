"""Cluster membership in etcd: the only module that talks to etcd.

Two keys per node, because liveness is not membership (Dynamo):

- ``/tessera/<kind>/nodes/<id>``: membership, JSON {address, zone, weight}. Written on start, kept
  while the node is down, removed only when the node is decommissioned.
- ``/tessera/<kind>/alive/<id>``: liveness, attached to a lease the node keeps alive. It vanishes
  when the lease lapses (crash, partition), so the node is "down" within ``lease_ttl`` seconds.

And one key per cluster for the block ring's parameters, next to the ring so that every watcher
of the ring sees them in the same snapshot:

- ``/tessera/block/params``: ``ClusterParams`` as JSON {replicas, write_quorum, vnodes}. Created
  once by whoever creates the cluster (the local launcher, else the first block node to start),
  changed only by an explicit admin command (``tessera cluster set-params``).

``View`` is an immutable snapshot (members, alive set, etcd revision); ``Watcher`` swaps in a
new View whenever the prefix changes, the way Swift's Ring reloads on mtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aetcd

from tessera.retry import ETCD_WATCH
from tessera.ring import DEFAULT_VNODES, Member, Ring, build_ring

log = logging.getLogger(__name__)

T = TypeVar("T")

PREFIX = "/tessera"


def nodes_prefix(kind: str) -> bytes:
    return f"{PREFIX}/{kind}/nodes/".encode()


def alive_prefix(kind: str) -> bytes:
    return f"{PREFIX}/{kind}/alive/".encode()


def kind_prefix(kind: str) -> bytes:
    return f"{PREFIX}/{kind}/".encode()


PARAMS_KEY = f"{PREFIX}/block/params".encode()


class ParamsError(ValueError):
    """Cluster parameters that cannot work, or that disagree with the cluster's."""


@dataclass(frozen=True)
class ClusterParams:
    """The block ring's parameters, the same for every process of a cluster.

    Attributes:
        replicas: Replication factor RF: copies of each chunk, on its first RF ring owners.
        write_quorum: W: copies durable before a put is acknowledged.
        vnodes: Ring points per unit of node weight.
    """

    replicas: int = 3
    write_quorum: int = 2
    vnodes: int = DEFAULT_VNODES

    def checked(self) -> ClusterParams:
        """Raise ``ParamsError`` unless 1 <= W <= RF and vnodes >= 1."""
        if self.replicas < 1:
            raise ParamsError(f"replicas (RF) must be at least 1, not {self.replicas}")
        if not 1 <= self.write_quorum <= self.replicas:
            raise ParamsError(
                f"write quorum W={self.write_quorum} must be between 1 and RF={self.replicas}"
            )
        if self.vnodes < 1:
            raise ParamsError(f"vnodes must be at least 1, not {self.vnodes}")
        return self

    def with_overrides(
        self, replicas: int = 0, write_quorum: int = 0, vnodes: int = 0
    ) -> ClusterParams:
        """These parameters with every non-zero argument in place of its field."""
        return ClusterParams(
            replicas or self.replicas, write_quorum or self.write_quorum, vnodes or self.vnodes
        )

    def disagreements(self, replicas: int = 0, write_quorum: int = 0, vnodes: int = 0) -> list[str]:
        """The given non-zero values that differ from these, as ``--flag V (cluster: C)``."""
        asked = (("--replicas", replicas, self.replicas),
                 ("--write-quorum", write_quorum, self.write_quorum),
                 ("--vnodes", vnodes, self.vnodes))  # fmt: skip
        return [
            f"{flag} {want} (cluster: {have})"
            for flag, want, have in asked
            if want and want != have
        ]

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ClusterParams:
        """Parse the etcd record; ``ParamsError`` if it is not valid parameters."""
        try:
            data: Any = json.loads(raw)
            params = cls(int(data["replicas"]), int(data["write_quorum"]), int(data["vnodes"]))
        except (ValueError, TypeError, KeyError) as e:
            raise ParamsError(f"cluster parameters in etcd are unreadable: {raw[:200]!r}") from e
        return params.checked()


DEFAULT_PARAMS = ClusterParams()


@dataclass(frozen=True)
class NodeRecord:
    """What a node says about itself in etcd."""

    node_id: str
    address: str
    zone: str = "default"
    weight: float = 1.0
    metrics_address: str = ""

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> NodeRecord:
        data = json.loads(raw)
        return cls(
            **{
                k: data[k]
                for k in ("node_id", "address", "zone", "weight", "metrics_address")
                if k in data
            }
        )


@dataclass(frozen=True)
class View:
    """One consistent snapshot of a node kind's membership and liveness."""

    kind: str
    revision: int
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    alive: frozenset[str] = frozenset()
    params: ClusterParams | None = None  # block views: the cluster's record, if published
    _rings: dict[tuple[int, bool], Ring] = field(default_factory=dict, compare=False, repr=False)

    @property
    def cluster_params(self) -> ClusterParams:
        """The published parameters, else the defaults (what block nodes publish unset)."""
        return self.params or DEFAULT_PARAMS

    def ring(self, vnodes: int = 0, *, alive_only: bool = False) -> Ring:
        """The hash ring for this view (built once per view); ``alive_only`` for stateless kinds.

        ``vnodes`` 0 means the cluster's (``cluster_params``).
        """
        key = (vnodes or self.cluster_params.vnodes, alive_only)
        if key not in self._rings:
            self._rings[key] = self._build(vnodes, alive_only)
        return self._rings[key]

    def _build(self, vnodes: int, alive_only: bool) -> Ring:
        members = [
            Member(n.node_id, n.address, n.zone, n.weight, n.node_id in self.alive)
            for n in self.nodes.values()
            if not alive_only or n.node_id in self.alive
        ]
        return build_ring(members, vnodes or self.cluster_params.vnodes, self.revision)


def connect(endpoints: list[tuple[str, int]], timeout: int = 5) -> aetcd.Client:
    """An aetcd client for the first endpoint (aetcd speaks to one endpoint at a time)."""
    host, port = endpoints[0]
    return aetcd.Client(host=host, port=port, timeout=timeout)


def run_with_etcd(
    endpoints: list[tuple[str, int]], fn: Callable[[aetcd.Client], Awaitable[T]]
) -> T:
    """Run ``fn(client)`` to completion from synchronous code (the CLI, the local launcher).

    It runs on an event loop in a thread of its own, so callers inside a running loop may use it.
    """
    out: list[T] = []
    error: list[BaseException] = []

    async def body() -> None:
        client = connect(endpoints)
        try:
            out.append(await fn(client))
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    def run() -> None:
        try:
            asyncio.run(body())
        except BaseException as e:  # handed to the caller's thread
            error.append(e)

    thread = threading.Thread(target=run, name="etcd-call", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return out[0]


async def read_view(client: aetcd.Client, kind: str) -> View:
    """Read the whole prefix of a kind at one revision."""
    result = await client.get_prefix(kind_prefix(kind))
    nodes: dict[str, NodeRecord] = {}
    alive: set[str] = set()
    params: ClusterParams | None = None
    nprefix, aprefix = nodes_prefix(kind), alive_prefix(kind)
    for kv in result:
        if kv.key == PARAMS_KEY:
            try:
                params = ClusterParams.decode(kv.value)
            except ParamsError as e:
                log.error("%s", e)
        elif kv.key.startswith(nprefix):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                rec = NodeRecord.decode(kv.value)
                nodes[rec.node_id] = rec
        elif kv.key.startswith(aprefix):
            alive.add(kv.key[len(aprefix) :].decode())
    return View(kind, result.header.revision, nodes, frozenset(alive), params)


async def read_params(client: aetcd.Client) -> ClusterParams | None:
    """The cluster's parameters, or None if nobody has published them yet."""
    got = await client.get(PARAMS_KEY)
    return None if got is None else ClusterParams.decode(got.value)


async def publish_params(client: aetcd.Client, params: ClusterParams) -> ClusterParams:
    """Publish ``params`` unless the cluster has some already; return the cluster's."""
    tx = client.transactions
    created, _ = await client.transaction(
        compare=[tx.version(PARAMS_KEY) == 0],
        success=[tx.put(PARAMS_KEY, params.checked().encode())],
        failure=[],
    )
    if created:
        log.info("published cluster parameters %s", params)
        return params
    stored = await read_params(client)
    assert stored is not None, "the parameters key vanished; only set_params writes it"
    return stored


async def set_params(
    client: aetcd.Client, replicas: int = 0, write_quorum: int = 0, vnodes: int = 0
) -> tuple[ClusterParams | None, ClusterParams]:
    """Change the non-zero parameters (compare-and-swap); returns (before, after)."""
    tx = client.transactions
    for _ in range(10):  # bounded: only a concurrent set_params makes the swap fail
        got = await client.get(PARAMS_KEY)
        before = None if got is None else ClusterParams.decode(got.value)
        after = (before or DEFAULT_PARAMS).with_overrides(replicas, write_quorum, vnodes).checked()
        guard = (
            tx.version(PARAMS_KEY) == 0 if got is None else tx.mod(PARAMS_KEY) == got.mod_revision
        )
        swapped, _ = await client.transaction(
            compare=[guard], success=[tx.put(PARAMS_KEY, after.encode())], failure=[]
        )
        if swapped:
            log.info("cluster parameters changed from %s to %s", before, after)
            return before, after
    raise ParamsError("cluster parameters keep changing under us; try again")


class Registration:
    """Registers this node (membership + leased liveness) and keeps the lease alive."""

    def __init__(self, client: aetcd.Client, kind: str, record: NodeRecord, ttl: int) -> None:
        self._client = client
        self._kind = kind
        self._record = record
        self._ttl = ttl
        self._task: asyncio.Task[None] | None = None
        self._lease: aetcd.Lease | None = None

    async def start(self) -> None:
        await self._register()
        self._task = asyncio.create_task(self._keepalive(), name=f"lease-{self._record.node_id}")

    async def _register(self) -> None:
        self._lease = await self._client.lease(self._ttl)
        key = self._record.node_id.encode()
        await self._client.put(nodes_prefix(self._kind) + key, self._record.encode())
        await self._client.put(
            alive_prefix(self._kind) + key, str(time.time()).encode(), lease=self._lease
        )
        log.info(
            "registered %s node %s at %s", self._kind, self._record.node_id, self._record.address
        )

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self._ttl / 3))
            try:
                assert self._lease is not None
                response = await self._lease.refresh()
                if isinstance(response, list | tuple):
                    response = response[0] if response else None
                if response is None or getattr(response, "TTL", 1) <= 0:
                    raise RuntimeError("lease expired")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # etcd away or lease lost: re-register when it is back
                log.warning("lease refresh failed (%s); re-registering", e)
                with contextlib.suppress(Exception):
                    await self._register()

    async def stop(self, *, leave: bool = False) -> None:
        """Stop heartbeating and drop liveness at once; ``leave`` also removes membership."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            if self._lease is not None:
                await self._lease.revoke()
            if leave:
                await self._client.delete(nodes_prefix(self._kind) + self._record.node_id.encode())


class Watcher:
    """Keeps the latest View of a kind, re-read whenever etcd reports a change under its prefix."""

    def __init__(
        self, client: aetcd.Client, kind: str, on_change: Callable[[View], None] | None = None
    ) -> None:
        self._client = client
        self.kind = kind
        self.view = View(kind, 0)
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        await self._refresh()
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.kind}")

    async def _refresh(self) -> None:
        view = await read_view(self._client, self.kind)
        if view.revision >= self.view.revision:
            self.view = view
            if self._on_change:
                self._on_change(view)
            async with self._changed:
                self._changed.notify_all()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                watch = await self._client.watch_prefix(
                    kind_prefix(self.kind), start_revision=self.view.revision + 1
                )
                await self._refresh()
                failures = 0
                async for _event in watch:
                    await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("etcd watch on %s failed (%s); retrying", self.kind, e)
                await asyncio.sleep(ETCD_WATCH.delay(failures))
                failures += 1
                with contextlib.suppress(Exception):
                    await self._refresh()

    async def wait_for(self, predicate: Callable[[View], bool], timeout: float) -> View:
        """Wait until the view satisfies ``predicate`` (for start-up and tests)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.view))
        return self.view

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
