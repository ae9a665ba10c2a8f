"""Issue 9, failure 5: case-only and normalisation-only renames sync as renames, and two local
names the server treats as one are both kept (the second as a conflicted copy)."""

from __future__ import annotations

import unicodedata

import pytest

from client import Client
from tests.sync.helpers import converge

pytestmark = pytest.mark.cluster

NFC = unicodedata.normalize("NFC", "caf\u00e9.txt")
NFD = unicodedata.normalize("NFD", NFC)


async def test_case_only_renames_of_a_file_and_a_folder_sync_as_moves(devices, cluster) -> None:
    x, y = await devices(2)
    x.write("a.txt", b"file")
    x.write("sub/inner.txt", b"in the folder")
    await converge([x, y])
    async with await Client.connect(cluster.meta_address, token=x.cfg.token) as c:
        file_id = (await c.stat("a.txt")).file_id
        folder_id = (await c.stat("sub")).file_id

        x.p("a.txt").rename(x.p("A.txt"))
        x.p("sub").rename(x.p("SUB"))
        t = await converge([x, y])

        assert set(t) == {"A.txt", "SUB", "SUB/inner.txt"}
        assert sorted(p.name for p in y.folder.iterdir() if p.name != ".tessera") == [
            "A.txt",
            "SUB",
        ]
        assert [e.name for e in await c.list()] == ["A.txt", "SUB"]
        assert (await c.stat("A.txt")).file_id == file_id  # renamed, not deleted and re-added
        assert (await c.stat("SUB")).file_id == folder_id
        assert [e.path for e in await c.history("A.txt")][:2] == ["A.txt", "a.txt"]


async def test_names_the_server_treats_as_one_are_both_kept(devices, cluster) -> None:
    x, y = await devices(2)
    x.write(NFC, b"composed")
    x.write(NFD, b"decomposed")
    x.write("Readme.md", b"capital")
    x.write("README.md", b"upper")
    t = await converge([x, y])

    assert len(t) == 4, t
    copies = [p for p in t if "conflicted copy" in p]
    assert len(copies) == 2, t
    got = {y.p(p).read_bytes() for p in t}
    assert got == {b"composed", b"decomposed", b"capital", b"upper"}
    assert x.p(NFC).read_bytes() == b"composed"  # the NFC spelling keeps the name
    async with await Client.connect(cluster.meta_address, token=x.cfg.token) as c:
        assert len(await c.list()) == 4
