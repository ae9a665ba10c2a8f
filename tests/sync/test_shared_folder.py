"""A shared folder through the daemon: user A shares a folder with user B; files written on
either side reach the other user's folder, under that user's mount path, byte-identical."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client import Client
from tests.integration.helpers import new_user
from tests.sync.helpers import Device, converge, tree

pytestmark = pytest.mark.cluster


@pytest.fixture
async def two_users(
    cluster, tmp_path: Path
) -> AsyncIterator[tuple[tuple[str, Device], tuple[str, Device]]]:
    a_name, a_token = await new_user(cluster.meta_address, cluster.admin_token, prefix="sha")
    b_name, b_token = await new_user(cluster.meta_address, cluster.admin_token, prefix="shb")
    a = Device("alice", tmp_path, cluster.meta_address, a_token)
    b = Device("bob", tmp_path, cluster.meta_address, b_token)
    try:
        yield (a_name, a), (b_name, b)
    finally:
        for d in (a, b):
            with contextlib.suppress(BaseException):
                await d.stop()


def subtree(folder: Path, rel: str) -> dict[str, str]:
    """tree() of one folder inside a device's folder ({} if it is not there)."""
    path = folder / rel
    return tree(path) if path.is_dir() else {}


async def wait_for(pred, devices: list[Device], timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in devices:
            if d.task is not None and d.task.done():
                d.task.result()  # surface a daemon crash
        if pred():
            return
        await asyncio.sleep(0.05)
    detail = "\n".join(
        f"{d.name}: {sorted(tree(d.folder).items())} status={d.daemon.status() if d.daemon else None}"
        for d in devices
    )
    raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{detail}")


async def test_shared_folder_between_two_users(cluster, two_users) -> None:
    (a_name, a), (b_name, b) = two_users
    await a.start()
    await b.start()

    a.write("team/readme.txt", b"shared from the start\n")
    a.write("team/sub/data.bin", os.urandom(200_000))
    a.write("private.txt", b"only alice")
    await converge([a])

    async with await Client.connect(cluster.meta_address, token=a.cfg.token) as ca:
        shared_ns = await ca.share("team", b_name, role="editor")
    async with await Client.connect(cluster.meta_address, token=b.cfg.token) as cb:
        mounts = {n.namespace_id: n.mount_path for n in await cb.namespaces()}
    assert shared_ns in mounts, mounts
    mount = mounts[shared_ns]
    assert mount, mounts

    # what A had in the folder before sharing reaches B under B's mount path; nothing else does
    await wait_for(
        lambda: subtree(b.folder, mount) == subtree(a.folder, "team"),
        [a, b],
        60,
        "the shared folder's existing files on B",
    )
    assert (b.folder / mount / "readme.txt").read_bytes() == b"shared from the start\n"
    assert (b.folder / mount / "sub/data.bin").read_bytes() == (
        a.folder / "team/sub/data.bin"
    ).read_bytes()
    assert not (b.folder / "private.txt").exists()

    # a file A creates in the shared folder appears on B's side, byte-identical
    blob = os.urandom(300_000)
    a.write("team/from-alice.bin", blob)
    await wait_for(
        lambda: (
            (b.folder / mount / "from-alice.bin").is_file()
            and (b.folder / mount / "from-alice.bin").read_bytes() == blob
        ),
        [a, b],
        60,
        "A's new file on B",
    )

    # a file B writes there appears on A's side
    b.write(f"{mount}/from-bob.txt", b"hello from bob\n")
    await wait_for(
        lambda: (
            (a.folder / "team/from-bob.txt").is_file()
            and (a.folder / "team/from-bob.txt").read_bytes() == b"hello from bob\n"
        ),
        [a, b],
        60,
        "B's new file on A",
    )

    # both settle with the shared folder identical and nothing leaked into either root
    await converge([a])
    await converge([b])
    await wait_for(
        lambda: subtree(b.folder, mount) == subtree(a.folder, "team"),
        [a, b],
        60,
        "identical shared folders",
    )
    assert set(tree(b.folder)) == {mount} | {f"{mount}/{p}" for p in subtree(b.folder, mount)}

    # a new device of A's, started after the share, replays both journals to the same folder
    a2 = Device("alice2", a.folder.parent.parent, cluster.meta_address, a.cfg.token)
    await a2.start()
    try:
        t = await converge([a, a2])
        assert t == tree(a.folder) and "team/from-bob.txt" in t
    finally:
        await a2.stop()
    for d in (a, b):
        c = d.counters()
        assert c.get("conflicts", 0) == 0, (d.name, c)
