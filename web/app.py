"""The web gateway: a Starlette app that is a client of the cluster like any other.

Each logged-in browser session holds an SDK ``Client`` with the user's own token, so every
page asks the metanode with that user's permissions (read tickets and receipts for block
data, as the CLI does); no path from a URL is looked up any other way. Public link pages go
through ``OpenLink`` (``web.public``). Uploads stream to a temporary file in chunks (never
whole in memory) and resume by offset; downloads stream chunk by chunk with HTTP ranges.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from client import Client, ClientConfig, SyncError
from tessera.paths import InvalidPath, normalize_path
from web import files_pages, public, uploads
from web.pages import e, hidden, page
from web.sessions import Session, Sessions, csrf_ok


@dataclass
class Gateway:
    """What every handler needs: where the cluster is, the sessions, the upload spool."""

    endpoint: str
    config: ClientConfig
    sessions: Sessions
    spool: Path
    public_url: str


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def clean_path(raw: str, *, allow_root: bool = True) -> str:
    """A normalised tree path from a URL or form, or a 400 (``BadPath``)."""
    try:
        return normalize_path(raw, allow_root=allow_root)
    except InvalidPath as exc:
        raise BadPath(str(exc)) from None


class BadPath(Exception):
    """A path from the request that is not a path."""


def error_page(status: int, message: str, s: Session | None = None) -> HTMLResponse:
    user = s.user if s and s.client else ""
    body = f'<p class="err">{e(message)}</p><p><a href="/files/">Back to your files</a></p>'
    return HTMLResponse(
        page("Error", body, user=user, csrf=s.csrf if s else ""), status_code=status
    )


def status_of(exc: SyncError) -> int:
    """The HTTP status for an SDK error."""
    name = exc.status.name if exc.status is not None else ""
    return {
        "NOT_FOUND": 404,
        "PERMISSION_DENIED": 403,
        "INVALID_ARGUMENT": 400,
        "FAILED_PRECONDITION": 409,
        "ALREADY_EXISTS": 409,
        "ABORTED": 409,
        "UNAUTHENTICATED": 401,
        "RESOURCE_EXHAUSTED": 429,
    }.get(name, 502)


def session_or_new(request: Request) -> tuple[Session, bool]:
    """The request's session, or a fresh anonymous one (True: set its cookie)."""
    s = gateway(request).sessions.get(request)
    if s is not None:
        return s, False
    return gateway(request).sessions.new(), True


def with_cookie(request: Request, response: Response, s: Session, fresh: bool) -> Response:
    if fresh:
        gateway(request).sessions.set_cookie(response, s)
    return response


async def form_checked(request: Request, s: Session | None) -> dict[str, Any] | None:
    """The posted form when its CSRF token is right, else None."""
    form = await request.form()
    return dict(form) if csrf_ok(s, str(form.get("csrf", ""))) else None


# -- login ---------------------------------------------------------------------------------
def login_form(s: Session, message: str = "") -> str:
    err = f'<p class="err">{e(message)}</p>' if message else ""
    return page(
        "Log in",
        f'{err}<form method="post" action="/login">{hidden(s.csrf)}'
        '<p><label>User <input name="name" autocomplete="username" required></label></p>'
        '<p><label>Password <input name="password" type="password" '
        'autocomplete="current-password" required></label></p>'
        "<p><button>Log in</button></p></form>",
    )


async def login_page(request: Request) -> Response:
    s, fresh = session_or_new(request)
    if s.client is not None:
        return RedirectResponse("/files/", 303)
    return with_cookie(request, HTMLResponse(login_form(s)), s, fresh)


async def login(request: Request) -> Response:
    g = gateway(request)
    s = g.sessions.get(request)
    form = await form_checked(request, s)
    if form is None or s is None:
        fresh = g.sessions.new()
        resp = HTMLResponse(login_form(fresh, "The form expired: try again."), status_code=403)
        g.sessions.set_cookie(resp, fresh)
        return resp
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    try:
        token = (await Client.login(g.endpoint, name, password, config=g.config)).token
        client = await Client.connect(g.endpoint, token=token, config=g.config)
    except SyncError as exc:
        return HTMLResponse(login_form(s, exc.message), status_code=status_of(exc))
    await g.sessions.drop(s)  # a fresh session id once logged in: no fixation
    new = g.sessions.new()
    new.client, new.user = client, name
    resp = RedirectResponse("/files/", 303)
    g.sessions.set_cookie(resp, new)
    return resp


async def logout(request: Request) -> Response:
    g = gateway(request)
    s = g.sessions.get(request)
    if await form_checked(request, s) is None or s is None:
        return error_page(403, "The form expired: reload the page and try again.", s)
    await g.sessions.drop(s)
    return RedirectResponse("/login", 303)


async def home(request: Request) -> Response:
    return RedirectResponse("/files/", 303)


async def healthz(request: Request) -> Response:
    return Response("ok\n", media_type="text/plain")


# -- the app ---------------------------------------------------------------------------------
def create_app(
    endpoint: str,
    *,
    public_url: str = "",
    spool: Path | None = None,
    config: ClientConfig | None = None,
    secure_cookies: bool = False,
) -> Starlette:
    """The gateway for the cluster whose metanode is at ``endpoint``."""
    import tempfile

    spool_dir = spool or Path(tempfile.mkdtemp(prefix="tessera-web-"))
    spool_dir.mkdir(parents=True, exist_ok=True)
    gw = Gateway(
        endpoint,
        config or ClientConfig.from_env(device_id="web"),
        Sessions(secure_cookies=secure_cookies),
        spool_dir,
        public_url.rstrip("/"),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.gateway = gw
        try:
            yield
        finally:
            await gw.sessions.close()
            await public.close(app)

    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        *files_pages.routes(),
        *uploads.routes(),
        *public.routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gw
    return app


async def serve(app: Starlette, host: str, port: int) -> None:
    """Run the app with uvicorn until cancelled."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    await server.serve()


__all__ = ["BadPath", "Gateway", "asyncio", "create_app", "serve"]
