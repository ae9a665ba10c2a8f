"""Issue 9, failure 8: the executable bit is part of a revision; new files get the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from client import Client
from client._modes import umask
from tests.integration.helpers import new_user
from tests.sync.helpers import converge

pytestmark = pytest.mark.cluster


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


async def test_executable_bit_round_trips_and_chmod_alone_syncs(devices, cluster) -> None:
    x, y = await devices(2)
    x.write("run.sh", b"#!/bin/sh\necho hi\n")
    x.p("run.sh").chmod(0o755)
    x.write("notes.txt", b"plain")
    x.p("notes.txt").chmod(0o644)
    await converge([x, y])

    mask = umask()
    assert mode(y.p("run.sh")) == 0o777 & ~mask  # +x survives, with the user's umask
    assert mode(y.p("notes.txt")) == 0o666 & ~mask  # new files are not 0600
    async with await Client.connect(cluster.meta_address, token=x.cfg.token) as c:
        first = await c.stat("notes.txt")
        assert (await c.stat("run.sh")).executable and not first.executable

        x.p("notes.txt").chmod(0o755)  # a chmod alone: a new revision, same content
        await converge([x, y])
        assert mode(y.p("notes.txt")) & 0o100
        after = await c.stat("notes.txt")
        assert after.executable and after.revision != first.revision
        assert after.content_hash == first.content_hash

        y.p("run.sh").chmod(0o644)  # and back the other way, from the other device
        await converge([x, y])
        assert not mode(x.p("run.sh")) & 0o111
        assert not (await c.stat("run.sh")).executable


async def test_put_and_get_keep_the_executable_bit(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    script = tmp_path / "tool"
    script.write_bytes(b"#!/bin/sh\n")
    script.chmod(0o700)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        v = await c.put_file(script, "bin/tool")
        assert v.entry.executable
        out = tmp_path / "fetched"
        await c.get_file("bin/tool", out)
        assert mode(out) == 0o777 & ~umask()
        plain = tmp_path / "plain"
        plain.write_bytes(b"x")
        plain.chmod(0o600)
        await c.put_file(plain, "plain")
        await c.get_file("plain", tmp_path / "plain-back")
        assert mode(tmp_path / "plain-back") == 0o666 & ~umask()
