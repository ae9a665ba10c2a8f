"""One load run: set up users and devices, warm up the streams, load, drain, report.

Every phase is bounded: setup by ``profile.setup_timeout``, warm-up by ``warmup_timeout``,
the load by ``max_ops`` and ``duration`` (plus one ``op_timeout`` for calls in flight, then
they are cancelled), the drain of propagating changes by ``sync_grace``, and teardown by a
fixed allowance. A run therefore stops by itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from client import Client, ClientConfig, Cursor, SyncError
from loadtest.profiles import Profile
from loadtest.sim import Budget, Context, Device, SimUser, Space, close_quietly, worker
from loadtest.stats import Recorder
from loadtest.sync import PropagationTracker, follow

log = logging.getLogger(__name__)

SETUP_PARALLELISM = 8
TEARDOWN_SECONDS = 30.0


class SetupError(RuntimeError):
    """The run could not start (bad endpoint, credentials, or the cluster refused); one line."""


@dataclass(frozen=True)
class UserSpec:
    """A pre-made user: a password to log in with, or a token."""

    name: str
    password: str = ""
    token: str = ""


@dataclass(frozen=True)
class Target:
    """The cluster to load and how to get users on it."""

    endpoint: str
    admin_token: str = ""  # creates fresh users when given and ``users`` is empty
    users: tuple[UserSpec, ...] = ()
    allow_remote: bool = False  # only loopback addresses unless set


def is_loopback(address: str) -> bool:
    """True if ``host:port`` names this machine (127.0.0.0/8, ::1 or localhost)."""
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_addresses(addresses: list[str], allow_remote: bool) -> None:
    """Refuse to send load anywhere but loopback unless ``allow_remote``."""
    remote = [a for a in addresses if a and not is_loopback(a)]
    if remote and not allow_remote:
        raise SetupError(
            f"not a loopback address: {', '.join(sorted(set(remote)))} "
            "(pass --allow-remote to load a deployed cluster)"
        )


async def _login(target: Target, spec: UserSpec) -> tuple[str, str]:
    if spec.token:
        return spec.name, spec.token
    resp = await Client.login(target.endpoint, spec.name, spec.password)
    return spec.name, str(resp.token)


async def _users(target: Target, profile: Profile, run_id: str) -> list[tuple[str, str]]:
    """(name, token) of the run's users: the pre-made ones, else fresh ones made by the admin."""
    specs = list(target.users[: profile.users])
    if not specs:
        if not target.admin_token:
            raise SetupError("no users given and no admin token to create them")
        async with await Client.connect(target.endpoint, token=target.admin_token) as admin:
            for i in range(profile.users):
                spec = UserSpec(f"lt{run_id}u{i}", password=f"pw-{uuid.uuid4().hex}")
                await admin.create_user(spec.name, spec.password)
                specs.append(spec)
    gate = asyncio.Semaphore(SETUP_PARALLELISM)

    async def login(spec: UserSpec) -> tuple[str, str]:
        async with gate:
            return await _login(target, spec)

    return list(await asyncio.gather(*(login(s) for s in specs)))


async def _make_user(
    target: Target,
    profile: Profile,
    account: tuple[str, str],
    run_id: str,
    work: Path,
    users: list[SimUser],
) -> None:
    """Connect a user's devices and make the run's folder; the user joins ``users`` first, so
    whatever was connected is closed at teardown even if this fails half-way."""
    name, token = account
    prefix = f"loadtest-{run_id}/"
    home = work / name
    root = Space(f"{name}:root", "", prefix, profile.files_per_user, home / "root")
    user = SimUser(name, token, root)
    users.append(user)
    for j in range(profile.devices_per_user):
        config = ClientConfig(device_id=f"lt{run_id}-{name}-d{j}", timeout=profile.op_timeout)
        client = await Client.connect(target.endpoint, token=token, config=config)
        user.devices.append(Device(user, client, home / f"d{j}"))
    for path in [root.store] + [d.tmp for d in user.devices]:
        path.mkdir(parents=True, exist_ok=True)
    root.device_users = {d.device_id: name for d in user.devices}
    await user.devices[0].client.make_folder(root.top)


async def _share(users: list[SimUser], profile: Profile, recorder: Recorder) -> dict[str, str]:
    """Each user shares a folder with the next user as editor; {"share": why} if it cannot."""
    if not profile.share or len(users) < 2:
        return {"share": "the profile does not share (or has one user)"}
    for i, owner in enumerate(users):
        member = users[(i + 1) % len(users)]
        dev = owner.devices[0]
        folder = f"{owner.root.prefix}shared-{owner.name}"
        started = time.monotonic()
        try:
            await dev.client.make_folder(folder)
            ns = await dev.client.share(folder, member.name, role="editor")
        except SyncError as e:
            unimplemented = e.status is grpc.StatusCode.UNIMPLEMENTED
            recorder.record(
                "share", started, e.status.name, expected=unimplemented, detail=e.message
            )
            return {"share": f"{e.status.name}: {e.message}"}
        recorder.record("share", started)
        store = owner.root.store.parent / f"shared-{i}"
        store.mkdir(parents=True, exist_ok=True)
        space = Space(f"{owner.name}:shared", ns, "", max(1, profile.files_per_user // 4), store)
        space.device_users = {d.device_id: owner.name for d in owner.devices}
        space.device_users |= {d.device_id: member.name for d in member.devices}
        owner.shared.append(space)
        member.shared.append(space)
    return {}


async def _cursors_at_head(user: SimUser, recorder: Recorder) -> list[Cursor]:
    """Cursors at the head of every namespace the user sees, so streams skip old history;
    none (a replay from the start, which the tracker ignores) if the cluster cannot list them."""
    started = time.monotonic()
    try:
        heads = await user.devices[0].client.namespaces()
    except SyncError as e:
        recorder.record("namespaces", started, e.status.name, detail=e.message)
        return []
    return [Cursor(h.namespace_id, h.head_seq) for h in heads]


async def _warm_up(
    users: list[SimUser], tracker: PropagationTracker, timeout: float
) -> dict[str, Any]:
    """Each device commits a marker; wait until every other device of its spaces saw it."""
    events: list[asyncio.Event] = []

    async def marker(dev: Device, space: Space, path: str) -> None:
        local = dev.scratch("marker")
        local.write_bytes(dev.device_id.encode())
        try:
            v = await dev.client.put_file(
                local, path, parent_revision="", namespace_id=space.namespace_id
            )
        finally:
            local.unlink(missing_ok=True)
        events.append(
            tracker.committed(v.entry.revision, space.expect(dev.device_id), measure=False)
        )

    jobs = []
    for u in users:
        for dev in u.devices:
            jobs.append(marker(dev, u.root, f"{u.root.prefix}.devices/{dev.device_id}"))
        for space in u.shared:
            if space.name == f"{u.name}:shared":
                dev = u.devices[0]
                jobs.append(marker(dev, space, f".hello-{dev.device_id}"))
    started = time.monotonic()
    await asyncio.gather(*jobs)
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    done, pending = await asyncio.wait(waits, timeout=timeout) if waits else (set(), set())
    for w in pending:
        w.cancel()
    return {
        "markers": len(events),
        "seen": len(done),
        "seconds": round(time.monotonic() - started, 3),
    }


async def run(
    target: Target,
    profile: Profile,
    out: Path,
    *,
    plots: bool = True,
    keep_work: bool = False,
) -> dict[str, Any]:
    """Run one load test and write ``out/report.json`` (and plots); returns the report.

    Raises:
        SetupError: the cluster could not be reached or set up within ``setup_timeout``.
    """
    profile = profile.validated()
    check_addresses([target.endpoint], target.allow_remote)
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix=f"work-{run_id}-", dir=out))
    recorder, started_at = Recorder(), datetime.now(UTC)
    tracker = PropagationTracker(recorder)
    users: list[SimUser] = []
    followers: list[asyncio.Task[None]] = []
    try:
        t_setup = time.monotonic()
        try:
            async with asyncio.timeout(profile.setup_timeout):
                accounts = await _users(target, profile, run_id)
                gate = asyncio.Semaphore(SETUP_PARALLELISM)

                async def make(account: tuple[str, str]) -> None:
                    async with gate:
                        await _make_user(target, profile, account, run_id, work, users)

                await asyncio.gather(*(make(a) for a in accounts))
                users.sort(key=lambda u: u.name)
                log.info("%d users with their devices ready", len(users))
                # Only the metanode has been called so far; check where the data would go.
                info = await users[0].devices[0].client.cluster_info()
                check_addresses(
                    [n.address for n in info.block_ring.nodes]
                    + [n.address for n in info.sync_nodes],
                    target.allow_remote,
                )
                disabled = await _share(users, profile, recorder)
                for u in users:
                    cursors = await _cursors_at_head(u, recorder)
                    for dev in u.devices:
                        followers.append(
                            asyncio.create_task(follow(dev.client, cursors, tracker, recorder))
                        )
        except TimeoutError:
            raise SetupError(f"setup took over {profile.setup_timeout} s") from None
        except SyncError as e:
            raise SetupError(f"setup failed: {e.status.name}: {e.message}") from None
        try:
            warmup = await asyncio.wait_for(
                _warm_up(users, tracker, profile.warmup_timeout), profile.warmup_timeout * 2
            )
        except (TimeoutError, SyncError) as e:
            warmup = {"error": f"{type(e).__name__}: {e}"}
        setup_s = time.monotonic() - t_setup
        log.info("setup took %.1f s; warm-up %s; load starts", setup_s, warmup)

        budget = Budget(profile.max_ops, profile.duration)
        ctx = Context(profile, recorder, tracker, budget, dict(disabled))
        recorder.start_load()
        tasks = [
            asyncio.create_task(
                worker(dev, ctx, random.Random(f"{profile.seed}/{dev.device_id}/{w}"))
            )
            for u in users
            for dev in u.devices
            for w in range(profile.workers_per_device)
        ]
        _, late = await asyncio.wait(tasks, timeout=profile.duration + profile.op_timeout + 5)
        for t in late:
            t.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        recorder.stop_load()
        log.info("load stopped (%s) after %.1f s", budget.stopped_by, recorder.load_seconds())
        drained = await tracker.drain(profile.sync_grace)
        log.info("changes settled: %s", drained)
    finally:
        for f in followers:
            f.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        closers = [d.client.close for u in users for d in u.devices]
        try:
            await asyncio.wait_for(close_quietly(*closers), TEARDOWN_SECONDS)
        except TimeoutError:
            log.warning("teardown took over %s s", TEARDOWN_SECONDS)
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
        log.info("torn down")

    report: dict[str, Any] = {
        "tessera_loadtest": 1,
        "run_id": run_id,
        "endpoint": target.endpoint,
        "started_at": started_at.isoformat(timespec="seconds"),
        "profile": profile.summary(),
        "users": len(users),
        "devices": sum(len(u.devices) for u in users),
        "shared_folders": sum(1 for u in users for s in u.shared if s.name == f"{u.name}:shared"),
        "setup_s": round(setup_s, 3),
        "warmup": warmup,
        "stopped_by": budget.stopped_by or "workers finished",
        "late_operations_cancelled": len(late),
        "sync_drained": drained,
        **recorder.report(),
        "skipped": dict(sorted(ctx.disabled.items())),
    }
    report["sync"] |= tracker.summary()
    write_samples(recorder, out / "samples.csv")
    if plots:
        from loadtest.plots import write_plots

        report["plots"] = [p.name for p in write_plots(recorder, report, out)]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def write_samples(recorder: Recorder, path: Path) -> None:
    """Every operation as CSV: t (s since load start), op, latency_ms, status, expected, phase."""
    lines = ["t_s,op,latency_ms,status,expected,phase"]
    lines += [
        f"{s.t:.4f},{s.op},{s.latency * 1000:.3f},{s.status},{int(s.expected)},{s.phase}"
        for s in recorder.samples
    ]
    path.write_text("\n".join(lines) + "\n")
