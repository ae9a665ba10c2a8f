"""Uploads through the gateway, never whole in memory.

- Resumable, in chunks (the page's script): ``POST /api/uploads`` starts one, ``PUT
  /api/uploads/ID?offset=N`` appends a chunk streamed from the request body to a spool file
  (an offset other than the size so far is refused with the size, so a client resumes where
  it left off), ``GET /api/uploads/ID`` tells the size so far, ``POST
  /api/uploads/ID/finish?path=P`` uploads the spool file through the SDK (content-defined
  chunks, only what the cluster lacks) and commits it.
- A plain form (no script): the multipart body is parsed by python-multipart into spooled
  temporary files (on disk past 1 MiB), then copied to the spool in 1 MiB pieces.

Every call needs the session's CSRF token (header ``X-CSRF-Token`` or form field).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from client import Client, SyncError
from web import app as base
from web.pages import url
from web.sessions import Session, csrf_ok

PIECE = 1 << 20
MAX_UPLOADS_PER_SESSION = 64
STALE = 24 * 3600


def _spool(request: Request, s: Session, upload_id: str) -> Path | None:
    """The spool file of one of this session's uploads (ids are random; others are not found)."""
    if not upload_id.isalnum() or len(upload_id) > 64:
        return None
    path = base.gateway(request).spool / f"{s.sid[:16]}-{upload_id}"
    return path if path.exists() else None


def _api(fn: Any) -> Any:
    async def run(request: Request) -> Response:
        s = base.gateway(request).sessions.get(request)
        if s is None or s.client is None:
            return PlainTextResponse("log in first", status_code=401)
        if not csrf_ok(s, request.headers.get("x-csrf-token", "")):
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        try:
            return await fn(request, s, s.client)  # type: ignore[no-any-return]
        except base.BadPath as exc:
            return PlainTextResponse(str(exc), status_code=400)
        except SyncError as exc:
            return PlainTextResponse(exc.message, status_code=base.status_of(exc))

    return run


def _sweep(spool: Path) -> None:
    """Drop spool files untouched for a day (abandoned uploads)."""
    cutoff = time.time() - STALE
    for p in spool.iterdir():
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            pass


async def start(request: Request, s: Session, c: Client) -> Response:
    spool = base.gateway(request).spool
    await asyncio.to_thread(_sweep, spool)
    if len(list(spool.glob(f"{s.sid[:16]}-*"))) >= MAX_UPLOADS_PER_SESSION:
        return PlainTextResponse("too many unfinished uploads", status_code=429)
    upload_id = secrets.token_hex(16)
    (spool / f"{s.sid[:16]}-{upload_id}").touch()
    return JSONResponse({"id": upload_id, "size": 0})


async def status(request: Request, s: Session, c: Client) -> Response:
    path = _spool(request, s, request.path_params["upload_id"])
    if path is None:
        return PlainTextResponse("no such upload", status_code=404)
    return JSONResponse({"size": path.stat().st_size})


async def append(request: Request, s: Session, c: Client) -> Response:
    path = _spool(request, s, request.path_params["upload_id"])
    if path is None:
        return PlainTextResponse("no such upload", status_code=404)
    have = path.stat().st_size
    try:
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        return PlainTextResponse("offset is a number of bytes", status_code=400)
    if offset != have:
        return JSONResponse({"size": have, "error": "resume at size"}, status_code=409)
    with path.open("ab") as f:
        async for piece in request.stream():
            await asyncio.to_thread(f.write, piece)
    return JSONResponse({"size": path.stat().st_size})


async def finish(request: Request, s: Session, c: Client) -> Response:
    path = _spool(request, s, request.path_params["upload_id"])
    if path is None:
        return PlainTextResponse("no such upload", status_code=404)
    remote = base.clean_path(request.query_params.get("path", ""), allow_root=False)
    try:
        version = await c.put_file(path, remote)
    finally:
        path.unlink(missing_ok=True)
    return JSONResponse({"path": version.entry.path, "revision": version.entry.revision})


async def form_upload(request: Request) -> Response:
    """The no-script fallback: a multipart form with one or more files."""
    g = base.gateway(request)
    s = g.sessions.get(request)
    if s is None or s.client is None:
        return RedirectResponse("/login", 303)
    async with request.form(max_files=32) as form:
        if not csrf_ok(s, str(form.get("csrf", ""))):
            return base.error_page(403, "The form expired: reload the page and try again.", s)
        try:
            folder = base.clean_path(str(form.get("folder", "")))
        except base.BadPath as exc:
            return base.error_page(400, str(exc), s)
        done = []
        for item in form.getlist("file"):
            if isinstance(item, str) or not item.filename:
                continue
            spool = g.spool / f"{s.sid[:16]}-form-{secrets.token_hex(8)}"
            try:
                with spool.open("wb") as out:
                    while piece := await item.read(PIECE):
                        await asyncio.to_thread(out.write, piece)
                name = Path(item.filename).name
                remote = base.clean_path(f"{folder}/{name}" if folder else name)
                await s.client.put_file(spool, remote)
                done.append(remote)
            except base.BadPath as exc:
                return base.error_page(400, str(exc), s)
            except SyncError as exc:
                return base.error_page(base.status_of(exc), exc.message, s)
            finally:
                spool.unlink(missing_ok=True)
    return RedirectResponse(url("/files/", folder) + f"?flash=uploaded+{len(done)}+files", 303)


def routes() -> list[Route]:
    return [
        Route("/upload", form_upload, methods=["POST"]),
        Route("/api/uploads", _api(start), methods=["POST"]),
        Route("/api/uploads/{upload_id}", _api(status), methods=["GET"]),
        Route("/api/uploads/{upload_id}", _api(append), methods=["PUT"]),
        Route("/api/uploads/{upload_id}/finish", _api(finish), methods=["POST"]),
    ]
