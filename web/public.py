"""The public pages behind a share link (no account): browse a linked folder, download a
linked file (streamed, ranges), unlock a password-protected link.

Everything goes through ``OpenLink``: the metanode checks the token, expiry, password and
rate limit, and only ever answers inside the linked file or folder. A wrong, expired or
revoked token is a plain 404. The password, once right, is kept in the visitor's (anonymous)
session for that link only.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from client import LinkVisitor, SyncError
from tessera.paths import InvalidPath, normalize_path
from web import app as base
from web.files_pages import stream_response
from web.pages import crumbs, e, entry_rows, hidden, page, size, url, when
from web.sessions import Session


def visitor(request: Request) -> LinkVisitor:
    state = request.app.state
    if getattr(state, "link_visitor", None) is None:
        g = base.gateway(request)
        state.link_visitor = LinkVisitor(g.endpoint, g.config)
    return state.link_visitor  # type: ignore[no-any-return]


async def close(app: Starlette) -> None:
    v = getattr(app.state, "link_visitor", None)
    if v is not None:
        await v.close()
        app.state.link_visitor = None


def not_found() -> HTMLResponse:
    body = '<p class="err">This link does not exist, has expired or was revoked.</p>'
    return HTMLResponse(page("Link not found", body), status_code=404)


def password_form(s: Session, token: str, message: str = "") -> str:
    err = f'<p class="err">{e(message)}</p>' if message else ""
    return page(
        "This link is password protected",
        f'{err}<form method="post" action="/s/{e(token)}/unlock">{hidden(s.csrf)}'
        '<input type="password" name="password" required> <button>Open</button></form>',
    )


async def show(request: Request) -> Response:
    token = request.path_params["token"]
    s, fresh = base.session_or_new(request)
    try:
        sub = normalize_path(request.path_params.get("sub", ""), allow_root=True)
    except InvalidPath:
        return not_found()
    download = request.query_params.get("download") == "1"
    v = visitor(request)
    password = s.link_passwords.get(token, "")
    try:
        opened = await v.open(token, password=password, path=sub, download=download)
    except SyncError as exc:
        status = base.status_of(exc)
        if status == 404:
            return not_found()
        return base.with_cookie(
            request,
            HTMLResponse(password_form(s, token, exc.message), status_code=status),
            s,
            fresh,
        )
    if opened.needs_password:
        return base.with_cookie(request, HTMLResponse(password_form(s, token)), s, fresh)
    prefix = f"/s/{token}/"
    x = opened.entry
    if download:
        return stream_response(
            request, x.name, sum(c.size for c in opened.blocklist.chunks),
            lambda start, end: v.read(opened, start, end),
        )  # fmt: skip
    if x.kind == 2:  # a folder
        from client import Entry

        kids = [Entry.from_pb(c) for c in opened.children]
        body = crumbs(prefix, sub).replace(">Home<", f">{e(opened.name)}<", 1)
        body += (
            "<table><tr><th>Name</th><th>Size</th><th>Modified</th></tr>"
            f"{entry_rows(kids, prefix, sub)}</table>"
        )
        title = x.name or opened.name
    else:
        dl = url(prefix, sub) + "?download=1" if sub else f"/s/{token}?download=1"
        body = (
            f"<p>{size(x.size)} · modified {when(x.modified_at_us)}</p>"
            f'<p><a id="download" href="{e(dl)}"><button>Download</button></a></p>'
        )
        title = x.name
    return base.with_cookie(request, HTMLResponse(page(title, body)), s, fresh)


async def unlock(request: Request) -> Response:
    token = request.path_params["token"]
    s = base.gateway(request).sessions.get(request)
    form = await base.form_checked(request, s)
    if form is None or s is None:
        fresh = base.gateway(request).sessions.new()
        resp = HTMLResponse(password_form(fresh, token, "The form expired: try again."), 403)
        base.gateway(request).sessions.set_cookie(resp, fresh)
        return resp
    password = str(form.get("password", ""))
    try:
        await visitor(request).open(token, password=password)
    except SyncError as exc:
        if base.status_of(exc) == 404:
            return not_found()
        return HTMLResponse(password_form(s, token, exc.message), base.status_of(exc))
    s.link_passwords[token] = password
    return RedirectResponse(f"/s/{token}", 303)


def routes() -> list[Route]:
    return [
        Route("/s/{token}", show),
        Route("/s/{token}/unlock", unlock, methods=["POST"]),
        Route("/s/{token}/{sub:path}", show),
    ]
