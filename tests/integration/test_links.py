"""Share links on the real cluster: download without an account, folder browsing, expiry,
revocation, passwords with a rate limit, counting, and what a link's read token cannot do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from client import Client, LinkVisitor
from tests.integration.helpers import new_user, run_cli
from tests.integration.meta_util import put_bytes, status_of

pytestmark = pytest.mark.cluster


async def _read(v: LinkVisitor, token: str, path: str = "", **kw: str) -> bytes:
    opened = await v.open(token, path=path, download=True, **kw)
    return b"".join([b async for b in v.read(opened)])


async def test_file_and_folder_links_without_an_account(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    data = bytes(range(256)) * 40_000  # ~10 MiB: several chunks
    v = LinkVisitor(cluster.meta_address)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        await put_bytes(c, tmp_path, "pub/big.bin", data)
        await put_bytes(c, tmp_path, "pub/inner/small.txt", b"small")
        await put_bytes(c, tmp_path, "private.txt", b"not linked")
        link, secret = await c.create_link("pub/big.bin")
        assert len(secret) >= 43 and not link.is_folder and link.path == "pub/big.bin"
        assert await _read(v, secret) == data
        # A range, in order, across chunk boundaries.
        opened = await v.open(secret, download=True)
        part = b"".join([b async for b in v.read(opened, 4_000_000, 4_500_123)])
        assert part == data[4_000_000:4_500_123]
        [listed] = [x for x in await c.links() if x.link_id == link.link_id]
        assert listed.downloads == 2 and listed.last_used_us > 0

        folder, ftoken = await c.create_link("pub")
        top = await v.open(ftoken)
        assert top.name == "pub" and sorted(e.name for e in top.children) == ["big.bin", "inner"]
        inner = await v.open(ftoken, path="inner")
        assert [e.name for e in inner.children] == ["small.txt"]
        assert await _read(v, ftoken, "inner/small.txt") == b"small"
        # Nothing outside the linked folder is reachable.
        for bad in ("../private.txt", "private.txt", "/private.txt", "inner/../../private.txt"):
            assert await status_of(v.open(ftoken, path=bad)) is grpc.StatusCode.NOT_FOUND
        # A wrong token is NOT_FOUND; so is a link once revoked (at once) or its file deleted.
        assert await status_of(v.open(secret[:-2] + "xy")) is grpc.StatusCode.NOT_FOUND
        await c.revoke_link(folder.link_id)
        assert await status_of(v.open(ftoken)) is grpc.StatusCode.NOT_FOUND
        await c.delete("pub/big.bin")
        assert await status_of(v.open(secret)) is grpc.StatusCode.NOT_FOUND
        # The read token a download hands out is good for block reads only.
        opened = await v.open((await c.create_link("private.txt"))[1], download=True)
        assert opened.read_token
        assert await status_of(Client.connect(cluster.meta_address, token=opened.read_token)) in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.UNAUTHENTICATED,
        )
    await v.close()


async def test_link_expiry_password_rate_limit_and_roles(cluster, tmp_path: Path) -> None:
    owner_name, owner = await new_user(cluster.meta_address, cluster.admin_token)
    viewer_name, viewer = await new_user(cluster.meta_address, cluster.admin_token)
    v = LinkVisitor(cluster.meta_address)
    async with (
        await Client.connect(cluster.meta_address, token=owner) as c,
        await Client.connect(cluster.meta_address, token=viewer) as d,
    ):
        await put_bytes(c, tmp_path, "team/doc.txt", b"doc")
        _, short = await c.create_link("team/doc.txt", expires_in=1)
        assert await _read(v, short) == b"doc"
        await asyncio.sleep(1.5)
        assert await status_of(v.open(short)) is grpc.StatusCode.NOT_FOUND

        _, locked = await c.create_link("team/doc.txt", password="s3cret-pass")
        assert (await v.open(locked)).needs_password
        assert await _read(v, locked, password="s3cret-pass") == b"doc"
        for _ in range(10):
            assert (
                await status_of(v.open(locked, password="guess"))
                is grpc.StatusCode.PERMISSION_DENIED
            )
        assert (
            await status_of(v.open(locked, password="s3cret-pass"))
            is grpc.StatusCode.RESOURCE_EXHAUSTED
        )

        # A viewer of a shared folder cannot give it out; an editor can.
        await c.share("team", viewer_name, role="viewer")
        assert await status_of(d.create_link("team/doc.txt")) is grpc.StatusCode.PERMISSION_DENIED
        await c.share("team", viewer_name, role="editor")
        link, tok = await d.create_link("team/doc.txt")
        assert link.path == "team/doc.txt" and await _read(v, tok) == b"doc"
        # Once the member loses access, their links die with it.
        await c.unshare("team", viewer_name)
        assert await status_of(v.open(tok)) is grpc.StatusCode.NOT_FOUND
        assert owner_name
    await v.close()


async def test_cli_link_create_list_rm(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        await put_bytes(c, tmp_path, "share-me.txt", b"hello")
    home = tmp_path / "home"

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return run_cli(cluster.meta_address, *args, token=token, home=home)

    out = cli("link", "create", "share-me.txt", "--expires", "2h")
    assert out.returncode == 0, out.stderr
    url = out.stdout.splitlines()[0]
    assert "/s/" in url
    link_id = out.stdout.splitlines()[1].split()[1]
    listed = cli("link", "list")
    assert link_id in listed.stdout and "0 downloads" in listed.stdout
    assert cli("link", "rm", link_id).returncode == 0
    assert link_id not in cli("link", "list").stdout
    bad = cli("link", "create", "share-me.txt", "--expires", "soon")
    assert bad.returncode == 1 and "cannot read the duration" in bad.stderr
    gone = cli("link", "rm", link_id)
    assert gone.returncode == 1 and gone.stderr.startswith("tessera: ")
    v = LinkVisitor(cluster.meta_address)
    assert await status_of(v.open(url.rsplit("/", 1)[1])) is grpc.StatusCode.NOT_FOUND
    await v.close()
