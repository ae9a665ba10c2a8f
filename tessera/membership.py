"""Cluster membership in etcd: the only module that talks to etcd.

Two keys per node, because liveness is not membership (Dynamo):

- ``/tessera/<kind>/nodes/<id>``: membership, JSON {address, zone, weight}. Written on start, kept
  while the node is down, removed only when the node is decommissioned.
- ``/tessera/<kind>/alive/<id>``: liveness, attached to a lease the node keeps alive. It vanishes
  when the lease lapses (crash, partition), so the node is "down" within ``lease_ttl`` seconds.

``View`` is an immutable snapshot (members, alive set, etcd revision); ``Watcher`` swaps in a
new View whenever the prefix changes, the way Swift's Ring reloads on mtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aetcd

from tessera.ring import Member, Ring, build_ring

log = logging.getLogger(__name__)

PREFIX = "/tessera"


def nodes_prefix(kind: str) -> bytes:
    return f"{PREFIX}/{kind}/nodes/".encode()


def alive_prefix(kind: str) -> bytes:
    return f"{PREFIX}/{kind}/alive/".encode()


def kind_prefix(kind: str) -> bytes:
    return f"{PREFIX}/{kind}/".encode()


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
    _rings: dict[tuple[int, bool], Ring] = field(default_factory=dict, compare=False, repr=False)

    def ring(self, vnodes: int = 0, *, alive_only: bool = False) -> Ring:
        """The hash ring for this view (built once per view); ``alive_only`` for stateless kinds."""
        key = (vnodes, alive_only)
        if key not in self._rings:
            self._rings[key] = self._build(vnodes, alive_only)
        return self._rings[key]

    def _build(self, vnodes: int, alive_only: bool) -> Ring:
        members = [
            Member(n.node_id, n.address, n.zone, n.weight, n.node_id in self.alive)
            for n in self.nodes.values()
            if not alive_only or n.node_id in self.alive
        ]
        kwargs = {"vnodes": vnodes} if vnodes else {}
        return build_ring(members, revision=self.revision, **kwargs)


def connect(endpoints: list[tuple[str, int]], timeout: int = 5) -> aetcd.Client:
    """An aetcd client for the first endpoint (aetcd speaks to one endpoint at a time)."""
    host, port = endpoints[0]
    return aetcd.Client(host=host, port=port, timeout=timeout)


async def read_view(client: aetcd.Client, kind: str) -> View:
    """Read the whole prefix of a kind at one revision."""
    result = await client.get_prefix(kind_prefix(kind))
    nodes: dict[str, NodeRecord] = {}
    alive: set[str] = set()
    nprefix, aprefix = nodes_prefix(kind), alive_prefix(kind)
    for kv in result:
        if kv.key.startswith(nprefix):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                rec = NodeRecord.decode(kv.value)
                nodes[rec.node_id] = rec
        elif kv.key.startswith(aprefix):
            alive.add(kv.key[len(aprefix) :].decode())
    return View(kind, result.header.revision, nodes, frozenset(alive))


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
        while True:
            try:
                watch = await self._client.watch_prefix(
                    kind_prefix(self.kind), start_revision=self.view.revision + 1
                )
                await self._refresh()
                async for _event in watch:
                    await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("etcd watch on %s failed (%s); retrying", self.kind, e)
                await asyncio.sleep(1.0)
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
