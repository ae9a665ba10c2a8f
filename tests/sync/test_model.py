"""Model-based randomised sync: random file operations on three devices, random network cuts
and daemon crashes; after quiescence every folder is identical and every content a device
wrote (and did not itself overwrite or delete) exists in some revision on the cluster.

Replay a failure with ``TESSERA_SYNC_SEED=<seed>``; run more seeds with
``TESSERA_SYNC_SEEDS=<n>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random

import pytest

from client import Client, Cursor, NotFoundError
from tests.sync.helpers import Device, converge, tree

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

_FIXED = os.environ.get("TESSERA_SYNC_SEED")
SEEDS = [int(_FIXED)] if _FIXED else [random.randrange(1 << 30) for _ in range(int(os.environ.get("TESSERA_SYNC_SEEDS", "2")))]
STEPS = int(os.environ.get("TESSERA_SYNC_STEPS", "30"))
DIRS = ["", "a", "a/b", "c"]


def content_hash(data: bytes) -> str:
    """What the metanode records for a small (one-chunk) file."""
    if not data:
        return hashlib.sha256(b"").hexdigest()
    return hashlib.sha256(hashlib.sha256(data).digest()).hexdigest()


class Model:
    """The random actor, and what it promised not to lose."""

    def __init__(self, seed: int, devices: list[Device]) -> None:
        self.rng = random.Random(seed)
        self.devices = devices
        self.live: dict[tuple[str, str], bytes] = {}      # (device, path) -> content it last wrote there
        self.paths: set[str] = set()
        self.log: list[str] = []

    def files(self, d: Device) -> list[str]:
        return sorted(p for p, h in tree(d.folder).items() if h != "dir")

    def data(self) -> bytes:
        n = self.rng.choice([0, 10, 1000, 20_000, 150_000])
        return self.rng.randbytes(n)

    async def step(self) -> None:
        d = self.rng.choice(self.devices)
        files = self.files(d)
        what = self.rng.choices(["create", "modify", "append", "delete", "move", "cut", "crash", "sleep"],
                                weights=[5, 3, 2, 2, 3, 1, 1, 2])[0]
        if what in ("modify", "append", "delete", "move") and not files:
            what = "create"
        self.log.append(f"{d.name} {what}")
        if what == "create":
            rel = "/".join(x for x in (self.rng.choice(DIRS), f"f{self.rng.randrange(12)}.bin") if x)
            self._write(d, rel, self.data())
        elif what == "modify":
            self._write(d, self.rng.choice(files), self.data())
        elif what == "append":
            rel = self.rng.choice(files)
            try:
                self._write(d, rel, d.p(rel).read_bytes() + self.rng.randbytes(500))
            except FileNotFoundError:
                pass
        elif what == "delete":
            rel = self.rng.choice(files)
            try:
                d.p(rel).unlink()
            except FileNotFoundError:
                return
            self.live.pop((d.name, rel), None)
        elif what == "move":
            rel = self.rng.choice(files)
            dest = "/".join(x for x in (self.rng.choice(DIRS), f"m{self.rng.randrange(12)}.bin") if x)
            if d.p(dest).exists():
                return
            d.p(dest).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(d.p(rel), d.p(dest))
            except FileNotFoundError:
                return
            self.paths.add(dest)
            if (d.name, rel) in self.live:
                self.live[(d.name, dest)] = self.live.pop((d.name, rel))
        elif what == "cut":
            if d.daemon is not None:
                d.daemon.disconnect()
                asyncio.get_running_loop().call_later(self.rng.uniform(0.2, 1.5), self._reconnect, d)
        elif what == "crash":
            await d.crash()
            await asyncio.sleep(self.rng.uniform(0, 0.5))
            await d.start()
        await asyncio.sleep(self.rng.uniform(0, 0.3))

    @staticmethod
    def _reconnect(d: Device) -> None:
        if d.daemon is not None:
            d.daemon.reconnect()

    def _write(self, d: Device, rel: str, data: bytes) -> None:
        d.write(rel, data)
        self.live[(d.name, rel)] = data
        self.paths.add(rel)


async def _revision_hashes(client: Client, paths: set[str]) -> set[str]:
    """Content hashes of every revision the user's namespaces ever committed.

    Every revision has a journal record, so the whole journal is read: a content written and
    later deleted or moved (a conflicted copy the next random step removed, say) still counts,
    as "exists in some revision" means. Histories of the paths are read too, as a cross-check.
    """
    out: set[str] = set()
    for ns in await client.namespaces():
        cursor = Cursor(ns.namespace_id, 0)
        while True:
            changes, cursor, more, resync = await client.list_changes(cursor)
            assert not resync, "the journal must still hold the whole test"
            out.update(ch.entry.content_hash.hex() for ch in changes)
            if not more:
                break
    for p in paths:
        try:
            out.update(e.content_hash.hex() for e in await client.history(p, limit=1000))
        except NotFoundError:
            pass
    return out


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_operations_converge(cluster, devices, seed: int) -> None:
    print(f"\nsync model seed {seed} (replay with TESSERA_SYNC_SEED={seed})")
    devs = await devices(3)
    model = Model(seed, devs)
    try:
        for _ in range(STEPS):
            await asyncio.wait_for(model.step(), 60)
        for d in devs:
            if d.daemon is not None:
                d.daemon.reconnect()
        final = await converge(devs, timeout=90)
        token = devs[0].cfg.token
        async with await Client.connect(cluster.meta_address, token=token) as c:
            known = await _revision_hashes(c, model.paths | set(final))
        lost = [(dev, p) for (dev, p), data in model.live.items() if content_hash(data) not in known]
        assert not lost, f"contents written and never seen in a revision: {lost}"
    except BaseException:
        print(f"\nsync model failure: replay with TESSERA_SYNC_SEED={seed}\nsteps: {model.log}")
        raise
