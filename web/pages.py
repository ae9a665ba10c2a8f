"""Server-rendered HTML for the web gateway: one layout, small escaped fragments."""

from __future__ import annotations

import time
from html import escape
from urllib.parse import quote

from client import Entry

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#22324a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#cfe0ff;text-decoration:none} header .me{margin-left:auto}
main{max-width:980px;margin:1.2em auto;background:#fff;padding:1.2em 1.6em;border-radius:8px;
box-shadow:0 1px 3px #0002}
table{border-collapse:collapse;width:100%} td,th{padding:.35em .5em;border-bottom:1px solid #e4e7ec;
text-align:left} th{font-weight:600;color:#556}
form.inline{display:inline} .muted{color:#778} .ok{color:#1a7f37} .err{color:#b42318}
fieldset{border:1px solid #e4e7ec;border-radius:6px;margin:1em 0} input,select,button{font:inherit}
button{background:#2f6fed;color:#fff;border:0;border-radius:4px;padding:.3em .8em;cursor:pointer}
button.quiet{background:#e8ecf3;color:#22324a} code{background:#eef1f5;padding:.1em .3em}
"""

UPLOAD_JS = """
document.querySelectorAll('form[data-chunked]').forEach(function (form) {
  form.addEventListener('submit', async function (ev) {
    var input = form.querySelector('input[type=file]');
    if (!input.files.length || !window.fetch) return;
    ev.preventDefault();
    var csrf = form.querySelector('input[name=csrf]').value;
    var status = form.querySelector('.status');
    var headers = {'X-CSRF-Token': csrf};
    for (var f of input.files) {
      var r = await fetch('/api/uploads', {method: 'POST', headers: headers});
      var id = (await r.json()).id, size = 8 * 1024 * 1024, off = 0, tries = 0;
      while (off < f.size) {  // resumable: after a failure, ask the size so far and go on
        status.textContent = 'uploading ' + f.name + ' ' + Math.round(100 * off / f.size) + '%';
        try {
          r = await fetch('/api/uploads/' + id + '?offset=' + off,
                          {method: 'PUT', headers: headers, body: f.slice(off, off + size)});
          if (r.ok) { off = (await r.json()).size; tries = 0; continue; }
        } catch (e) {}
        if (++tries > 5) { status.textContent = 'upload failed: try again'; return; }
        await new Promise(function (ok) { setTimeout(ok, 1000 * tries); });
        try {
          r = await fetch('/api/uploads/' + id, {headers: headers});
          if (r.ok) off = (await r.json()).size;
        } catch (e) {}
      }
      var dest = form.querySelector('input[name=folder]').value;
      dest = (dest ? dest + '/' : '') + f.name;
      r = await fetch('/api/uploads/' + id + '/finish?path=' + encodeURIComponent(dest),
                      {method: 'POST', headers: headers});
      if (!r.ok) { status.textContent = await r.text(); return; }
    }
    location.reload();
  });
});
"""


def e(text: object) -> str:
    """HTML-escaped text."""
    return escape(str(text), quote=True)


def url(prefix: str, path: str) -> str:
    """``prefix`` + the path, each segment percent-encoded."""
    return prefix + quote(path, safe="/")


def when(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(us / 1e6)) if us else "-"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def page(title: str, body: str, *, user: str = "", csrf: str = "", flash: str = "") -> str:
    """A whole page; ``user`` shows the navigation of a logged-in user."""
    nav = ""
    if user:
        nav = (
            '<a href="/files/">Files</a><a href="/trash/">Trash</a><a href="/shared">Shared</a>'
            f'<a href="/links">Links</a><span class="me">{e(user)} '
            f'<form class="inline" method="post" action="/logout">{hidden(csrf)}'
            '<button class="quiet">Log out</button></form></span>'
        )
    note = f'<p class="ok" id="flash">{e(flash)}</p>' if flash else ""
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{e(title)} · Tessera</title>'
        f"<style>{CSS}</style></head><body><header><b>Tessera</b>{nav}</header>"
        f"<main><h1>{e(title)}</h1>{note}{body}</main>"
        f"<script>{UPLOAD_JS}</script></body></html>"
    )


def hidden(csrf: str, **fields: str) -> str:
    """The CSRF field and any other hidden fields of a form."""
    out = f'<input type="hidden" name="csrf" value="{e(csrf)}">'
    for k, v in fields.items():
        out += f'<input type="hidden" name="{e(k)}" value="{e(v)}">'
    return out


def crumbs(prefix: str, path: str) -> str:
    """Links to each folder above ``path``."""
    parts = [p for p in path.split("/") if p]
    out = [f'<a href="{e(prefix)}">Home</a>']
    for i, p in enumerate(parts):
        out.append(f'<a href="{e(url(prefix, "/".join(parts[: i + 1])))}">{e(p)}</a>')
    return '<p class="crumbs">' + " / ".join(out) + "</p>"


def entry_rows(entries: list[Entry], prefix: str, base: str = "") -> str:
    """Table rows of a folder listing; names link to ``prefix`` + their path."""
    rows = []
    for x in entries:
        path = f"{base}/{x.name}" if base else x.name
        label = e(x.name) + ("/" if x.is_folder else "")
        what = "folder" if x.is_folder else size(x.size)
        rows.append(
            f'<tr><td><a href="{e(url(prefix, path))}">{label}</a></td><td>{what}</td>'
            f"<td>{when(x.modified_at_us)}</td></tr>"
        )
    return "".join(rows) or '<tr><td colspan="3" class="muted">empty</td></tr>'
