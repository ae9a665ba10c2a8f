"""Simulated users, their devices, the files they keep, and the operations they do.

A *space* is where files live: a user's own tree (under the run's folder in the root
namespace) or a shared folder's namespace that two users can write. Each space keeps a local
copy of the head of every file it holds (immutable files, replaced on edit), the SHA-256 of
every revision the run committed (so every read is verified) and the devices that should see
its changes (so propagation can be matched).

A device is one SDK ``Client`` with its own device id; its workers pick operations from the
profile's mix until the shared budget (operations and time) runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc

from client import Client, ConflictError, Entry, FileVersion, SyncError
from loadtest.profiles import Profile
from loadtest.stats import OK, Recorder
from loadtest.sync import PropagationTracker
from loadtest.workload import (
    FOLDERS,
    apply_edit,
    conflicted_copy_name,
    file_name,
    sample_size,
    sha256_file,
    write_random,
)

log = logging.getLogger(__name__)

OPTIONAL_OPS = ("move", "delete")  # dropped (with a reason) when the cluster lacks them


class DataMismatch(Exception):
    """A downloaded file's bytes differ from what was committed for that revision."""


@dataclass(eq=False)
class FileRec:
    """One file of a space and a local copy of its head."""

    path: str
    revision: str
    size: int
    sha256: bytes
    local: Path
    users: int = 0  # operations using it right now
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(eq=False)
class Space:
    """A tree of files that one or more users' devices work in."""

    name: str
    namespace_id: str  # "" means the calling user's root namespace
    prefix: str  # path prefix of everything the run writes in this namespace
    target_files: int
    store: Path  # local copies of file heads
    device_users: dict[str, str] = field(default_factory=dict)  # device id -> user name
    files: dict[int, FileRec] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)
    hashes: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # revision -> (SHA-256, op)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def top(self) -> str:
        """The folder that holds the run's files in this namespace."""
        return self.prefix.rstrip("/")

    def expect(self, device_id: str) -> list[tuple[str, str]]:
        """(device, kind) pairs that should see a change ``device_id`` commits here."""
        origin = self.device_users.get(device_id, "")
        return [
            (d, "device" if u == origin else "share")
            for d, u in self.device_users.items()
            if d != device_id
        ]

    def pick(self, rng: random.Random, *, exclusive: bool = False) -> tuple[int, FileRec] | None:
        """A random file; ``exclusive`` takes one nobody uses out of the space (put it back)."""
        items = [(k, r) for k, r in self.files.items() if not exclusive or r.users == 0]
        if not items:
            return None
        key, rec = rng.choice(items)
        if exclusive:
            del self.files[key]
        return key, rec

    def new_path(self, rng: random.Random) -> tuple[int, str]:
        n = next(self.counter)
        folder = f"{self.prefix}{rng.choice(FOLDERS)}"
        return n, f"{folder}/{file_name(rng, n)}"


@dataclass(eq=False)
class SimUser:
    """A user: a name, a token, devices, and the spaces they can write."""

    name: str
    token: str
    root: Space
    shared: list[Space] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)

    def choose_space(self, rng: random.Random, shared_fraction: float) -> Space:
        if self.shared and rng.random() < shared_fraction:
            return rng.choice(self.shared)
        return self.root


@dataclass(eq=False)
class Device:
    """One device of a user: an SDK client with its own device id and scratch folder."""

    user: SimUser
    client: Client
    tmp: Path

    @property
    def device_id(self) -> str:
        return self.client.device_id

    def scratch(self, what: str) -> Path:
        return self.tmp / f"{what}-{uuid.uuid4().hex[:12]}"


class Budget:
    """Operations left and a deadline, shared by every worker of a run."""

    def __init__(self, max_ops: int, seconds: float) -> None:
        self.max_ops = max_ops
        self.deadline = time.monotonic() + seconds
        self.used = 0
        self.stopped_by = ""

    def take(self) -> bool:
        """Claim one operation; False once the operations or the time are used up."""
        if self.used >= self.max_ops:
            self.stopped_by = self.stopped_by or "max_ops"
            return False
        if time.monotonic() >= self.deadline:
            self.stopped_by = self.stopped_by or "duration"
            return False
        self.used += 1
        return True


@dataclass(eq=False)
class Context:
    """What every worker of a run shares."""

    profile: Profile
    recorder: Recorder
    tracker: PropagationTracker
    budget: Budget
    disabled: dict[str, str] = field(default_factory=dict)  # op -> why

    def weights(self) -> dict[str, float]:
        return {
            op: w
            for op, w in self.profile.mix.weights().items()
            if w > 0 and op not in self.disabled
        }


@dataclass
class OpClock:
    """When an operation's measured part began and ended.

    Work a person or the harness does around the client call (writing a new file's bytes,
    editing a local copy, verifying a download) is kept out: an operation restarts the clock
    after preparing and stops it before checking.
    """

    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    op: str = ""  # set when an operation fell back to another (an edit with no file: create)

    def restart(self) -> None:
        self.started = time.monotonic()

    def stop(self) -> None:
        self.ended = time.monotonic()


Outcome = tuple[str, bool] | None  # (status, expected) when not plainly OK
Op = Callable[[Device, Space, random.Random, Context, OpClock], Awaitable[Outcome]]


# -- bookkeeping ------------------------------------------------------------------------------
def _committed(
    ctx: Context, dev: Device, space: Space, v: FileVersion, digest: bytes, op: str
) -> None:
    """A put returned: register the revision's bytes, expect it on other devices, count bytes."""
    space.hashes[v.entry.revision] = (digest, op)
    ctx.tracker.committed(v.entry.revision, space.expect(dev.device_id))
    ctx.recorder.transfer(logical=v.entry.size, sent=v.stats.bytes_sent)
    ctx.recorder.chunks += v.stats.chunks
    ctx.recorder.chunks_sent += v.stats.chunks_sent


def _add_file(
    space: Space, n: int, path: str, v: FileVersion, digest: bytes, content: Path
) -> FileRec:
    """Keep ``content`` (moved into the store) as the head of a new file of the space."""
    local = space.store / f"{n}.{uuid.uuid4().hex[:8]}"
    content.replace(local)
    rec = FileRec(path, v.entry.revision, v.entry.size, digest, local)
    space.files[n] = rec
    space.folders.add(path.rpartition("/")[0])
    return rec


@dataclass(frozen=True)
class Snapshot:
    """A file's head as one consistent view: a hard link to its bytes and what they are."""

    local: Path
    revision: str
    path: str
    sha256: bytes


async def _snapshot(dev: Device, rec: FileRec) -> Snapshot:
    """A hard link to the file's current head (heads are immutable files) and its identity."""
    async with rec.lock:
        snap = dev.scratch("snap")
        os.link(rec.local, snap)
        return Snapshot(snap, rec.revision, rec.path, rec.sha256)


# -- operations -------------------------------------------------------------------------------
async def op_create(
    dev: Device, space: Space, rng: random.Random, ctx: Context, clock: OpClock
) -> Outcome:
    clock.op = "create"
    n, path = space.new_path(rng)
    size = sample_size(rng, ctx.profile)
    out = dev.scratch("new")
    try:
        digest = await asyncio.to_thread(write_random, out, size, rng)
        clock.restart()
        v = await dev.client.put_file(
            out, path, parent_revision="", namespace_id=space.namespace_id
        )
        _committed(ctx, dev, space, v, digest, "create")
        _add_file(space, n, path, v, digest, out)
        ctx.recorder.file_sizes.append(size)
    finally:
        out.unlink(missing_ok=True)
    return None


async def op_copy(
    dev: Device, space: Space, rng: random.Random, ctx: Context, clock: OpClock
) -> Outcome:
    """Save an existing file's bytes under a new name (a duplicate: deduplicated)."""
    picked = space.pick(rng)
    if picked is None:
        return await op_create(dev, space, rng, ctx, clock)
    _, rec = picked
    rec.users += 1
    try:
        snap = await _snapshot(dev, rec)
    finally:
        rec.users -= 1
    try:
        n, path = space.new_path(rng)
        v = await dev.client.put_file(
            snap.local, path, parent_revision="", namespace_id=space.namespace_id
        )
        _committed(ctx, dev, space, v, snap.sha256, "copy")
        _add_file(space, n, path, v, snap.sha256, snap.local)
    finally:
        snap.local.unlink(missing_ok=True)
    return None


async def op_edit(
    dev: Device, space: Space, rng: random.Random, ctx: Context, clock: OpClock
) -> Outcome:
    """Edit a file on top of the head this device knows; a conflict keeps a conflicted copy."""
    picked = space.pick(rng)
    if picked is None:
        return await op_create(dev, space, rng, ctx, clock)
    _, rec = picked
    rec.users += 1
    out = dev.scratch("edit")
    snap: Snapshot | None = None
    try:
        snap = await _snapshot(dev, rec)
        parent, path = snap.revision, snap.path
        kind, digest = await asyncio.to_thread(apply_edit, snap.local, out, rng, ctx.profile)
        ctx.recorder.edit_kinds[kind.value] += 1
        clock.restart()
        try:
            v = await dev.client.put_file(
                out, path, parent_revision=parent, namespace_id=space.namespace_id
            )
        except ConflictError:
            date = datetime.now(UTC).strftime("%Y-%m-%d %H%M%S")
            copy = conflicted_copy_name(path, dev.device_id, date)
            v = await dev.client.put_file(
                out, copy, parent_revision="", namespace_id=space.namespace_id
            )
            _committed(ctx, dev, space, v, digest, "conflicted copy")
            _add_file(space, next(space.counter), copy, v, digest, out)
            return ("ABORTED", True)
        _committed(ctx, dev, space, v, digest, f"edit ({kind.value})")
        async with rec.lock:
            if v.entry.revision and rec.revision == parent:
                old, rec.local = rec.local, space.store / f"e.{uuid.uuid4().hex[:12]}"
                out.replace(rec.local)
                rec.revision, rec.size, rec.sha256 = v.entry.revision, v.entry.size, digest
                old.unlink(missing_ok=True)
    finally:
        rec.users -= 1
        out.unlink(missing_ok=True)
        if snap is not None:
            snap.local.unlink(missing_ok=True)
    return None


async def op_get(
    dev: Device, space: Space, rng: random.Random, ctx: Context, clock: OpClock
) -> Outcome:
    """Download a file's head and check its bytes against what the run committed."""
    picked = space.pick(rng)
    if picked is None:
        return await op_create(dev, space, rng, ctx, clock)
    _, rec = picked
    rec.users += 1
    out = dev.scratch("get")
    try:
        entry = await dev.client.get_file(rec.path, out, namespace_id=space.namespace_id)
        clock.stop()
        digest = await asyncio.to_thread(sha256_file, out)
        want = space.hashes.get(entry.revision)
        if want is None:
            ctx.recorder.unverified_reads += 1
        elif digest != want[0]:
            got = out.stat().st_size
            raise DataMismatch(
                f"{rec.path}@{entry.revision} (from {want[1]}): downloaded {got} bytes "
                f"(entry says {entry.size}) differ from what was committed"
            )
        ctx.recorder.transfer(received=entry.size)
    finally:
        rec.users -= 1
        out.unlink(missing_ok=True)
    return None


async def op_list(
    dev: Device, space: Space, rng: random.Random, ctx: Context, clock: OpClock
) -> Outcome:
    folder = rng.choice(sorted(space.folders)) if space.folders else space.top
    await dev.client.list(folder, namespace_id=space.namespace_id)
    return None


async def op_stat(
    dev: Device, space: Space, rng: random.Random, ctx: Context, clock: OpClock
) -> Outcome:
    picked = space.pick(rng)
    if picked is None:
        return await op_create(dev, space, rng, ctx, clock)
    _, rec = picked
    rec.users += 1
    try:
        await dev.client.stat(rec.path, namespace_id=space.namespace_id)
    finally:
        rec.users -= 1
    return None


def _track_metadata_change(ctx: Context, dev: Device, space: Space, entry: Entry | None) -> None:
    if entry is not None and entry.revision:
        ctx.tracker.committed(entry.revision, space.expect(dev.device_id))


async def op_move(
    dev: Device, space: Space, rng: random.Random, ctx: Context, clock: OpClock
) -> Outcome:
    """Move a file to another folder of the same space (one metadata change, no upload)."""
    picked = space.pick(rng, exclusive=True)
    if picked is None:
        return await op_create(dev, space, rng, ctx, clock)
    key, rec = picked
    try:
        folder = f"{space.prefix}{rng.choice(FOLDERS)}"
        dst = f"{folder}/m{key}-{rec.path.rpartition('/')[2]}"
        entry = await dev.client.move(rec.path, dst, namespace_id=space.namespace_id)
        _track_metadata_change(ctx, dev, space, entry)
        rec.path = dst
        if entry is not None and entry.revision:
            rec.revision = entry.revision
            space.hashes[entry.revision] = (rec.sha256, "move")
        space.folders.add(folder)
    finally:
        space.files[key] = rec
    return None


async def op_delete(
    dev: Device, space: Space, rng: random.Random, ctx: Context, clock: OpClock
) -> Outcome:
    picked = space.pick(rng, exclusive=True)
    if picked is None:
        return await op_create(dev, space, rng, ctx, clock)
    key, rec = picked
    try:
        entry = await dev.client.delete(rec.path, namespace_id=space.namespace_id)
    except BaseException:
        space.files[key] = rec
        raise
    _track_metadata_change(ctx, dev, space, entry)
    rec.local.unlink(missing_ok=True)
    return None


OPS: dict[str, Op] = {
    "create": op_create,
    "edit": op_edit,
    "copy": op_copy,
    "move": op_move,
    "delete": op_delete,
    "get": op_get,
    "list": op_list,
    "stat": op_stat,
}


def choose_op(space: Space, rng: random.Random, ctx: Context) -> str:
    """Draw an operation from the mix, adjusted to what the space holds."""
    weights = ctx.weights()
    op = rng.choices(list(weights), weights=list(weights.values()))[0]
    n = len(space.files)
    if op in ("create", "copy") and n >= space.target_files:
        op = "edit"
    if op in ("move", "delete") and n < 2:
        op = "create"
    if n == 0 and op != "list":
        op = "create"
    return op


async def worker(dev: Device, ctx: Context, rng: random.Random) -> None:
    """Do operations until the budget says stop; record every one, never raise (but cancel)."""
    while ctx.budget.take():
        space = dev.user.choose_space(rng, ctx.profile.shared_fraction)
        op = choose_op(space, rng, ctx)
        clock = OpClock()
        status, expected, detail = OK, False, ""
        try:
            outcome = await asyncio.wait_for(
                OPS[op](dev, space, rng, ctx, clock), ctx.profile.op_timeout
            )
            if outcome is not None:
                status, expected = outcome
        except SyncError as e:
            status, detail = e.status.name, e.message
            if e.status is grpc.StatusCode.UNIMPLEMENTED and op in OPTIONAL_OPS:
                ctx.disabled.setdefault(op, f"the cluster answers UNIMPLEMENTED: {e.message}")
                expected = True
        except TimeoutError:
            status, detail = "TIMEOUT", f"over {ctx.profile.op_timeout} s"
        except DataMismatch as e:
            status, detail = "DATA_MISMATCH", str(e)
        except Exception as e:  # noqa: BLE001 - a load test records, it does not stop
            status, detail = f"CLIENT_{type(e).__name__}", str(e)
            log.exception("%s on %s failed", op, dev.device_id)
        ctx.recorder.record(
            clock.op or op,
            clock.started,
            status,
            expected=expected,
            detail=detail,
            ended=clock.ended,
        )
        if ctx.profile.think_time > 0:
            await asyncio.sleep(min(rng.expovariate(1 / ctx.profile.think_time), 60.0))


async def close_quietly(*closers: Callable[[], Awaitable[None]]) -> None:
    """Run every closer, ignoring errors (used while tearing down)."""
    for close in closers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), 10)
