"""The logged-in pages: browse, download (streamed, ranges), history and restore (also of
whole folders at a time), trash, sharing and links. Every call goes through the session's own
SDK client, so the metanode checks the user's permissions on each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from client import Client, SyncError
from web import app as base
from web.pages import crumbs, e, entry_rows, hidden, page, size, url, when
from web.sessions import Session

Handler = Callable[[Request, Session, Client], Awaitable[Response]]


def logged_in(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run ``fn`` with the session's client; no session: the login page. Maps SDK errors
    and bad paths to an error page with the right status."""

    async def run(request: Request) -> Response:
        s = base.gateway(request).sessions.get(request)
        if s is None or s.client is None:
            return RedirectResponse("/login", 303)
        try:
            return await fn(request, s, s.client)
        except base.BadPath as exc:
            return base.error_page(400, str(exc), s)
        except SyncError as exc:
            return base.error_page(base.status_of(exc), exc.message, s)

    return run


def posted(fn: Callable[[Request, Session, Client, dict[str, Any]], Awaitable[Response]]) -> Any:
    """A form handler: the CSRF token must match, else 403 and nothing is done."""

    async def run(request: Request, s: Session, c: Client) -> Response:
        form = await base.form_checked(request, s)
        if form is None:
            return base.error_page(403, "The form expired: reload the page and try again.", s)
        return await fn(request, s, c, form)

    return logged_in(run)


def back_to(path: str, flash: str = "") -> Response:
    target = url("/files/", path) + (f"?flash={quote(flash)}" if flash else "")
    return RedirectResponse(target, 303)


def _flash(request: Request) -> str:
    return request.query_params.get("flash", "")[:300]


async def browse(request: Request, s: Session, c: Client) -> Response:
    path = base.clean_path(request.path_params.get("path", ""))
    if path and not (entry := await c.stat(path)).is_folder:
        return HTMLResponse(await file_page(s, c, path, entry, _flash(request)))
    entries = await c.list(path)
    body = crumbs("/files/", path)
    body += (
        "<table><tr><th>Name</th><th>Size</th><th>Modified</th></tr>"
        f"{entry_rows(entries, '/files/', path)}</table>"
        f'<form method="post" action="/upload" enctype="multipart/form-data" data-chunked>'
        f"<fieldset><legend>Upload</legend>{hidden(s.csrf, folder=path)}"
        '<input type="file" name="file" multiple required> <button>Upload</button> '
        '<span class="status muted"></span></fieldset></form>'
        f'<form method="post" action="/mkdir"><fieldset><legend>New folder</legend>'
        f'{hidden(s.csrf, folder=path)}<input name="name" required> <button>Create</button>'
        "</fieldset></form>"
    )
    if path:
        body += tools(s, path, is_folder=True)
    title = path.rpartition("/")[2] or "Your files"
    return HTMLResponse(page(title, body, user=s.user, csrf=s.csrf, flash=_flash(request)))


def tools(s: Session, path: str, *, is_folder: bool) -> str:
    """History, restore at a time, sharing, links and delete for a file or folder."""
    at_form = (
        f'<form method="post" action="/restore">{hidden(s.csrf, path=path)}'
        "<fieldset><legend>Restore as it was at (UTC)</legend>"
        '<input type="datetime-local" name="at" step="1" required> <button>Restore</button>'
        "</fieldset></form>"
    )
    share = (
        f'<form method="post" action="/share">{hidden(s.csrf, path=path)}'
        "<fieldset><legend>Share with a user</legend>"
        '<input name="user" placeholder="user name" required> <select name="role">'
        '<option value="editor">editor</option><option value="viewer">viewer</option></select>'
        " <button>Share</button></fieldset></form>"
    )
    link = (
        f'<form method="post" action="/links/create">{hidden(s.csrf, path=path)}'
        "<fieldset><legend>Create a link (no account needed)</legend>"
        '<label>expires in <select name="expires"><option value="">never</option>'
        '<option value="3600">1 hour</option><option value="86400">1 day</option>'
        '<option value="604800">7 days</option></select></label> '
        '<label>password <input name="password" type="password"></label> '
        "<button>Create link</button></fieldset></form>"
    )
    delete = (
        f'<form method="post" action="/delete">{hidden(s.csrf, path=path)}'
        '<button class="quiet">Delete</button></form>'
    )
    hist = f'<p><a href="{e(url("/history/", path))}">History</a>'
    if is_folder:
        hist += f' · <a href="{e(url("/trash/", path))}">Deleted here</a>'
    return hist + "</p>" + at_form + share + link + delete


async def file_page(s: Session, c: Client, path: str, entry: Any, flash: str) -> str:
    body = crumbs("/files/", path.rpartition("/")[0])
    body += (
        f"<p>{size(entry.size)} · modified {when(entry.modified_at_us)} · "
        f'<a id="download" href="{e(url("/dl/", path))}">Download</a></p>'
    )
    body += history_table(s, path, await c.history(path, limit=50))
    body += tools(s, path, is_folder=False)
    return page(entry.name, body, user=s.user, csrf=s.csrf, flash=flash)


def history_table(s: Session, path: str, revisions: list[Any]) -> str:
    rows = []
    for r in revisions:
        what = "deleted" if r.deleted else ("folder" if r.is_folder else size(r.size))
        restore = ""
        if not r.deleted and not r.is_folder and r.path == path:
            restore = (
                f'<form class="inline" method="post" action="/restore">'
                f"{hidden(s.csrf, path=path, revision=r.revision)}"
                '<button class="quiet">Restore this</button></form>'
            )
        get = ""
        if not r.deleted and not r.is_folder:
            get = f' <a href="{e(url("/dl/", r.path))}?rev={e(r.revision)}">get</a>'
        rows.append(
            f"<tr><td>{when(r.modified_at_us)}</td><td>{e(r.path)}</td><td>{what}</td>"
            f"<td>{e(r.device_id or '-')}</td><td>{restore}{get}</td></tr>"
        )
    return (
        "<h2>History</h2><table><tr><th>When</th><th>Path</th><th>Size</th><th>Device</th>"
        f"<th></th></tr>{''.join(rows)}</table>"
    )


async def history(request: Request, s: Session, c: Client) -> Response:
    path = base.clean_path(request.path_params["path"], allow_root=False)
    body = crumbs("/files/", path) + history_table(s, path, await c.history(path, limit=200))
    return HTMLResponse(page(f"History of {path}", body, user=s.user, csrf=s.csrf))


def parse_range(header: str, total: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` range as [start, end); None for none or one this server ignores."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:
            n = int(last)
            return (max(total - n, 0), total) if n > 0 else None
        start = int(first)
        end = int(last) + 1 if last else total
    except ValueError:
        return None
    if start >= total or end <= start:
        return (total, total)  # unsatisfiable
    return start, min(end, total)


def stream_response(
    request: Request, name: str, total: int, read: Callable[[int, int], Any]
) -> Response:
    """A download of ``total`` bytes, whole or one range, streamed from ``read(start, end)``."""
    disposition = f"attachment; filename*=UTF-8''{quote(name)}"
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": disposition}
    rng = parse_range(request.headers.get("range", ""), total)
    if rng is None:
        headers["Content-Length"] = str(total)
        return StreamingResponse(
            read(0, total), headers=headers, media_type="application/octet-stream"
        )
    start, end = rng
    if start >= total:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{total}"})
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        read(start, end), status_code=206, headers=headers, media_type="application/octet-stream"
    )


async def download(request: Request, s: Session, c: Client) -> Response:
    path = base.clean_path(request.path_params["path"], allow_root=False)
    opened = await c.open_for_reading(path, revision=request.query_params.get("rev", ""))
    chunks, ticket = list(opened.blocklist.chunks), opened.ticket
    total = sum(x.size for x in chunks)
    return stream_response(
        request,
        path.rpartition("/")[2],
        total,
        lambda start, end: c.read_chunks(chunks, ticket, start, end),
    )


# -- changes ---------------------------------------------------------------------------------
async def mkdir(request: Request, s: Session, c: Client, form: dict[str, Any]) -> Response:
    folder = base.clean_path(str(form.get("folder", "")))
    path = base.clean_path(f"{folder}/{form.get('name', '')}" if folder else str(form["name"]))
    await c.make_folder(path)
    return back_to(folder, f"created {path}")


async def delete(request: Request, s: Session, c: Client, form: dict[str, Any]) -> Response:
    path = base.clean_path(str(form.get("path", "")), allow_root=False)
    await c.delete(path)
    return back_to(path.rpartition("/")[0], f"deleted {path} (see Trash to restore it)")


async def restore(request: Request, s: Session, c: Client, form: dict[str, Any]) -> Response:
    path = base.clean_path(str(form.get("path", "")), allow_root=False)
    if form.get("revision"):
        await c.restore(path, str(form["revision"]))
        return back_to(path, f"restored {path}")
    at_text = str(form.get("at", ""))
    at_us = 0
    if at_text:
        try:
            at = dt.datetime.fromisoformat(at_text).replace(tzinfo=dt.UTC)
        except ValueError:
            return base.error_page(400, f"cannot read the time {at_text!r}", s)
        at_us = int(at.timestamp() * 1_000_000)
    done = await c.restore_at(path, at_us, file_id=str(form.get("file_id", "")))
    return back_to(path, f"restored {path} ({done.changed} changes)")


async def trash(request: Request, s: Session, c: Client) -> Response:
    path = base.clean_path(request.path_params.get("path", ""))
    items, retention = await c.trash(path)
    rows = []
    for t in items:
        x = t.entry
        inside = f" ({t.files_inside} files)" if x.is_folder else ""
        rows.append(
            f"<tr><td>{e(x.path)}{'/' if x.is_folder else ''}{inside}</td>"
            f"<td>{when(x.modified_at_us)}</td><td>{e(t.deleted_by or '?')}</td>"
            f"<td>{when(t.restorable_until_us) if t.restorable_until_us else 'kept'}</td><td>"
            f'<form class="inline" method="post" action="/restore">'
            f"{hidden(s.csrf, path=x.path, file_id=x.file_id)}<button>Restore</button></form>"
            "</td></tr>"
        )
    days = f"{retention // 86400} days" if retention >= 86400 else f"{retention} seconds"
    body = (
        f'<p class="muted">Deleted files are kept {days} after deletion.</p>'
        "<table><tr><th>Deleted</th><th>When</th><th>By</th><th>Restorable until</th><th></th></tr>"
        + ("".join(rows) or '<tr><td colspan="5" class="muted">the trash is empty</td></tr>')
        + "</table>"
    )
    return HTMLResponse(page("Trash", body, user=s.user, csrf=s.csrf))


async def share(request: Request, s: Session, c: Client, form: dict[str, Any]) -> Response:
    path = base.clean_path(str(form.get("path", "")), allow_root=False)
    user, role = str(form.get("user", "")), str(form.get("role", "editor"))
    await c.share(path, user, role=role)
    return back_to(path, f"shared {path} with {user} as {role}")


async def unshare(request: Request, s: Session, c: Client, form: dict[str, Any]) -> Response:
    path = base.clean_path(str(form.get("path", "")), allow_root=False)
    await c.unshare(path, str(form.get("user", "")))
    return RedirectResponse("/shared", 303)


async def shared(request: Request, s: Session, c: Client) -> Response:
    rows = []
    for ns in await c.namespaces():
        if not ns.mount_path:
            continue
        members = await c.members(ns.mount_path)
        who = ", ".join(
            f"{e(m.name)} ({e(m.role)})"
            + (
                remove_form(s, ns.mount_path, m.name)
                if m.role != "owner" and ns.role == "owner"
                else ""
            )
            for m in members
        )
        if ns.role != "owner":
            who += remove_form(s, ns.mount_path, s.user, "Leave")
        rows.append(
            f'<tr><td><a href="{e(url("/files/", ns.mount_path))}">{e(ns.mount_path)}</a></td>'
            f"<td>{e(ns.role)}</td><td>{who}</td></tr>"
        )
    body = (
        "<table><tr><th>Shared folder</th><th>Your role</th><th>Members</th></tr>"
        + ("".join(rows) or '<tr><td colspan="3" class="muted">no shared folders</td></tr>')
        + "</table>"
    )
    file_rows = []
    for f in await c.shared_files():
        if f.role == "owner":
            who = ", ".join(f"{e(n)} ({e(r)})" + remove_form(s, f.path, n) for n, r in f.members)
            link = f'<a href="{e(url("/files/", f.path))}">{e(f.path)}</a>'
            file_rows.append(f"<tr><td>{link}</td><td>you own it</td><td>{who}</td></tr>")
        else:
            get = url(f"/sf/{f.share_id}/", f.name)
            file_rows.append(
                f'<tr><td><a href="{e(get)}">{e(f.name)}</a> ({size(f.size)})</td>'
                f"<td>{e(f.role)}</td><td>from {e(f.owner)}</td></tr>"
            )
    body += (
        "<h2>Shared files</h2><table><tr><th>File</th><th>Your role</th><th>Who</th></tr>"
        + ("".join(file_rows) or '<tr><td colspan="3" class="muted">no shared files</td></tr>')
        + "</table>"
    )
    return HTMLResponse(page("Shared", body, user=s.user, csrf=s.csrf))


def remove_form(s: Session, path: str, user: str, label: str = "Remove") -> str:
    """A button that unshares ``path`` with ``user`` (the member themselves: leave)."""
    return (
        f' <form class="inline" method="post" action="/unshare">'
        f'{hidden(s.csrf, path=path, user=user)}<button class="quiet">{e(label)}</button></form>'
    )


async def shared_file(request: Request, s: Session, c: Client) -> Response:
    """Download a file shared with the user (its share id names it)."""
    share_id, name = request.path_params["share_id"], request.path_params["name"]
    opened = await c.open_for_reading(
        base.clean_path(name, allow_root=False), namespace_id=share_id
    )
    chunks, ticket = list(opened.blocklist.chunks), opened.ticket
    return stream_response(
        request,
        opened.entry.name,
        sum(x.size for x in chunks),
        lambda start, end: c.read_chunks(chunks, ticket, start, end),
    )


async def links_page(request: Request, s: Session, c: Client) -> Response:
    rows = []
    for x in await c.links():
        rows.append(
            f"<tr><td>{e(x.path)}</td><td>{when(x.expires_at_us) if x.expires_at_us else 'never'}"
            f"</td><td>{'yes' if x.has_password else 'no'}</td><td>{x.downloads}</td>"
            f"<td>{when(x.last_used_us)}</td><td>"
            f'<form class="inline" method="post" action="/links/rm">'
            f'{hidden(s.csrf, link_id=x.link_id)}<button class="quiet">Revoke</button></form>'
            "</td></tr>"
        )
    new = request.query_params.get("new", "")
    made = f'<p class="ok">New link: <code id="new-link">{e(new)}</code></p>' if new else ""
    body = (
        made + "<table><tr><th>Path</th><th>Expires</th><th>Password</th><th>Downloads</th>"
        "<th>Last used</th><th></th></tr>"
        + ("".join(rows) or '<tr><td colspan="6" class="muted">no links</td></tr>')
        + "</table>"
    )
    return HTMLResponse(page("Links", body, user=s.user, csrf=s.csrf, flash=_flash(request)))


async def link_create(request: Request, s: Session, c: Client, form: dict[str, Any]) -> Response:
    path = base.clean_path(str(form.get("path", "")), allow_root=False)
    expires = str(form.get("expires", "") or "0")
    if not expires.isdigit():
        return base.error_page(400, "pick when the link expires", s)
    _, token = await c.create_link(
        path, expires_in=int(expires), password=str(form.get("password", ""))
    )
    full = f"{base.gateway(request).public_url or str(request.base_url).rstrip('/')}/s/{token}"
    return RedirectResponse(f"/links?new={quote(full)}", 303)


async def link_rm(request: Request, s: Session, c: Client, form: dict[str, Any]) -> Response:
    await c.revoke_link(str(form.get("link_id", "")))
    return RedirectResponse("/links?flash=revoked", 303)


def routes() -> list[Route]:
    return [
        Route("/files/", logged_in(browse)),
        Route("/files/{path:path}", logged_in(browse)),
        Route("/dl/{path:path}", logged_in(download)),
        Route("/history/{path:path}", logged_in(history)),
        Route("/trash/", logged_in(trash)),
        Route("/trash/{path:path}", logged_in(trash)),
        Route("/shared", logged_in(shared)),
        Route("/sf/{share_id}/{name}", logged_in(shared_file)),
        Route("/links", logged_in(links_page)),
        Route("/mkdir", posted(mkdir), methods=["POST"]),
        Route("/delete", posted(delete), methods=["POST"]),
        Route("/restore", posted(restore), methods=["POST"]),
        Route("/share", posted(share), methods=["POST"]),
        Route("/unshare", posted(unshare), methods=["POST"]),
        Route("/links/create", posted(link_create), methods=["POST"]),
        Route("/links/rm", posted(link_rm), methods=["POST"]),
    ]
