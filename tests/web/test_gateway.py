"""The web gateway over HTTP (its own process, the real cluster): sessions and CSRF, chunked
resumable uploads, streamed downloads with ranges, permissions, and link pages."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import time

import httpx
import pytest

from client import Client
from tests.web.conftest import user_with_password

pytestmark = pytest.mark.cluster


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "the page has no CSRF field"
    return m.group(1)


async def _login(http: httpx.AsyncClient, name: str, password: str) -> str:
    """Log in through the form; returns the CSRF token of the new session."""
    first = await http.get("/login")
    before = http.cookies.get("tessera_session")
    resp = await http.post(
        "/login", data={"csrf": _csrf(first.text), "name": name, "password": password}
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/files/"
    cookie = resp.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert http.cookies.get("tessera_session") != before  # a fresh session id: no fixation
    return _csrf((await http.get("/files/")).text)


async def test_login_csrf_upload_download_and_permissions(cluster, web_url: str) -> None:
    name, password, token = await user_with_password(cluster)
    other, other_pw, _ = await user_with_password(cluster)
    async with httpx.AsyncClient(base_url=web_url, timeout=60) as http:
        assert (await http.get("/files/")).status_code == 303  # not logged in: to /login
        first = await http.get("/login")
        bad = await http.post(
            "/login", data={"csrf": _csrf(first.text), "name": name, "password": "wrong"}
        )
        assert bad.status_code == 401 and "wrong user name or password" in bad.text
        csrf = await _login(http, name, password)

        # A form without the session's CSRF token does nothing.
        refused = await http.post("/mkdir", data={"csrf": "forged", "folder": "", "name": "x"})
        assert refused.status_code == 403
        ok = await http.post("/mkdir", data={"csrf": csrf, "folder": "", "name": "docs"})
        assert ok.status_code == 303

        # A resumable upload in chunks: a wrong offset is refused with the size so far.
        data = os.urandom(5 * 1024 * 1024 + 123)
        hdr = {"X-CSRF-Token": csrf}
        assert (await http.post("/api/uploads")).status_code == 403
        up = (await http.post("/api/uploads", headers=hdr)).json()["id"]
        part = 2 * 1024 * 1024
        r = await http.put(f"/api/uploads/{up}?offset=0", content=data[:part], headers=hdr)
        assert r.json()["size"] == part
        again = await http.put(f"/api/uploads/{up}?offset=0", content=data[:part], headers=hdr)
        assert again.status_code == 409 and again.json()["size"] == part
        assert (await http.get(f"/api/uploads/{up}", headers=hdr)).json()["size"] == part
        r = await http.put(f"/api/uploads/{up}?offset={part}", content=data[part:], headers=hdr)
        assert r.json()["size"] == len(data)
        done = await http.post(f"/api/uploads/{up}/finish?path=docs/big.bin", headers=hdr)
        assert done.status_code == 200 and done.json()["path"] == "docs/big.bin"

        page = await http.get("/files/docs")
        assert "big.bin" in page.text
        whole = await http.get("/dl/docs/big.bin")
        assert whole.status_code == 200 and whole.content == data
        part_resp = await http.get("/dl/docs/big.bin", headers={"Range": "bytes=4194000-4194999"})
        assert part_resp.status_code == 206 and part_resp.content == data[4194000:4195000]
        assert part_resp.headers["content-range"] == f"bytes 4194000-4194999/{len(data)}"
        tail = await http.get("/dl/docs/big.bin", headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == data[-10:]
        beyond = await http.get("/dl/docs/big.bin", headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416

        # Paths that are not paths are refused; nothing reaches outside the user's tree.
        assert (await http.get("/files/docs/..%2F..%2Fetc")).status_code == 400
        assert (await http.get("/dl/nope.bin")).status_code == 404

    async with httpx.AsyncClient(base_url=web_url, timeout=60) as http:
        await _login(http, other, other_pw)
        assert (await http.get("/files/docs")).status_code == 404  # another user's folder
        assert (await http.get("/dl/docs/big.bin")).status_code == 404
    async with await Client.connect(cluster.meta_address, token=token) as c:
        assert [e.name for e in await c.list("docs")] == ["big.bin"]


async def test_link_pages_without_an_account(cluster, web_url: str) -> None:
    name, password, token = await user_with_password(cluster)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        await c.make_folder("pub/inner")
        local = os.urandom(1000)
        path = f"/tmp/web-link-{name}"
        with open(path, "wb") as f:
            f.write(local)
        from pathlib import Path

        await c.put_file(Path(path), "pub/inner/a.bin")
        os.unlink(path)
        _, folder_token = await c.create_link("pub")
        _, locked = await c.create_link("pub/inner/a.bin", password="open sesame")
    async with httpx.AsyncClient(base_url=web_url, timeout=60) as anon:
        assert (await anon.get("/s/not-a-real-token")).status_code == 404
        top = await anon.get(f"/s/{folder_token}")
        assert top.status_code == 200 and "inner/" in top.text
        inner = await anon.get(f"/s/{folder_token}/inner")
        assert "a.bin" in inner.text
        got = await anon.get(f"/s/{folder_token}/inner/a.bin?download=1")
        assert got.status_code == 200 and got.content == local
        assert (await anon.get(f"/s/{folder_token}/inner/..%2F..%2Fx")).status_code == 404
        # Password: the form, a wrong one refused, the right one opens.
        form = await anon.get(f"/s/{locked}")
        assert "password" in form.text
        wrong = await anon.post(
            f"/s/{locked}/unlock", data={"csrf": _csrf(form.text), "password": "nope"}
        )
        assert wrong.status_code == 403
        right = await anon.post(
            f"/s/{locked}/unlock", data={"csrf": _csrf(form.text), "password": "open sesame"}
        )
        assert right.status_code == 303
        got = await anon.get(f"/s/{locked}?download=1")
        assert got.status_code == 200 and got.content == local


async def test_folder_restore_at_trash_and_file_share_through_the_web(
    cluster, web_url: str
) -> None:
    name, password, token = await user_with_password(cluster)
    friend, friend_pw, _ = await user_with_password(cluster)
    async with httpx.AsyncClient(base_url=web_url, timeout=60) as http:
        csrf = await _login(http, name, password)
        hdr = {"X-CSRF-Token": csrf}

        async def upload(path: str, data: bytes) -> dict:
            up = (await http.post("/api/uploads", headers=hdr)).json()["id"]
            await http.put(f"/api/uploads/{up}?offset=0", content=data, headers=hdr)
            return (await http.post(f"/api/uploads/{up}/finish?path={path}", headers=hdr)).json()

        await upload("proj/a.txt", b"a before")
        async with await Client.connect(cluster.meta_address, token=token) as c:
            at = (await c.stat("proj/a.txt")).modified_at_us
        # The form's datetime-local has whole seconds: restore to the second after the first
        # upload, and make the later changes after that second (same machine, same clock).
        second = int(at / 1e6) + 1
        await asyncio.sleep(max(0.0, second - time.time() + 0.05))
        await upload("proj/a.txt", b"a after")
        await upload("proj/b.txt", b"added later")
        when = dt.datetime.fromtimestamp(second, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        r = await http.post("/restore", data={"csrf": csrf, "path": "proj", "at": when})
        assert r.status_code == 303, r.text
        page = await http.get(r.headers["location"])
        assert "restored proj (2 changes)" in page.text
        assert (await http.get("/dl/proj/a.txt")).content == b"a before"
        assert (await http.get("/dl/proj/b.txt")).status_code == 404
        trash = await http.get("/trash/proj")
        assert "proj/b.txt" in trash.text and name in trash.text

        # Share a file with a friend, who finds it on the Shared page and downloads it.
        r = await http.post(
            "/share", data={"csrf": csrf, "path": "proj/a.txt", "user": friend, "role": "viewer"}
        )
        assert r.status_code == 303
    async with httpx.AsyncClient(base_url=web_url, timeout=60) as http:
        await _login(http, friend, friend_pw)
        shared = await http.get("/shared")
        m = re.search(r'href="(/sf/[^"]+)"', shared.text)
        assert m and "a.txt" in shared.text and "viewer" in shared.text
        got = await http.get(m.group(1))
        assert got.status_code == 200 and got.content == b"a before"
        assert (await http.get("/sf/not-a-share/a.txt")).status_code in (400, 404)
        share_url = m.group(1)
    # The owner removes the friend on the Shared page: the file is gone for them at once.
    async with httpx.AsyncClient(base_url=web_url, timeout=60) as http:
        csrf = await _login(http, name, password)
        assert friend in (await http.get("/shared")).text
        r = await http.post("/unshare", data={"csrf": csrf, "path": "proj/a.txt", "user": friend})
        assert r.status_code == 303
    async with httpx.AsyncClient(base_url=web_url, timeout=60) as http:
        await _login(http, friend, friend_pw)
        assert (await http.get(share_url)).status_code == 404
