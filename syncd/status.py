"""The running daemon's local control socket: ``tessera sync status`` and exclude/include.

A unix socket ``status.sock`` in the daemon's state directory; the directory is made 0700 and
the socket 0600 before anyone could connect, and a connecting process must run as the same
user (``SO_PEERCRED``). One request a connection: a JSON object on one line (``{"cmd":
"status"}``, ``{"cmd": "exclude", "paths": [...]}``, ``{"cmd": "include", "paths": [...]}``);
one JSON object back on one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.localdb import FILE
from syncd.selective import BadPath

if TYPE_CHECKING:
    from syncd.daemon import Daemon

log = logging.getLogger(__name__)

SOCKET_NAME = "status.sock"
VIEW_ONLY = "view-only"  # skipped reasons starting so: an edit kept local (no permission)
MAX_REQUEST = 64 * 1024
_UNIX_PATH_MAX = 107

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def socket_path(state_dir: Path) -> Path:
    """Where a daemon with this state directory listens."""
    return state_dir / SOCKET_NAME


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    return struct.unpack("3i", creds)[1]


class StatusServer:
    """Serves ``handler`` on the state directory's socket while the daemon runs."""

    def __init__(self, state_dir: Path, handler: Handler) -> None:
        self.path = socket_path(state_dir)
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> bool:
        """Listen; False (and a warning) if the socket cannot be made."""
        state_dir = self.path.parent
        if len(os.fsencode(self.path)) > _UNIX_PATH_MAX:
            log.warning(
                "status socket path %s is too long for a unix socket: `tessera sync status` cannot reach "
                "this daemon (use a shorter --state-dir)",
                self.path,
            )
            return False
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            st = os.stat(state_dir)
            shared = st.st_uid != os.getuid() or st.st_mode & stat.S_ISVTX
            if shared or state_dir.resolve() in (Path.home().resolve(), Path("/")):
                log.warning(
                    "%s is not a private state directory of yours: no status socket "
                    "(give the daemon a --state-dir of its own)",
                    state_dir,
                )
                return False
            os.chmod(state_dir, 0o700)  # nobody else can reach the socket, even briefly
            with contextlib.suppress(FileNotFoundError):
                if not await _answers(self.path):
                    self.path.unlink()  # left by a daemon that died
                else:
                    log.warning("another daemon already answers on %s", self.path)
                    return False
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
            os.chmod(self.path, 0o600)
        except OSError as e:
            log.warning("cannot open the status socket %s: %s", self.path, e)
            return False
        return True

    async def stop(self) -> None:
        """Stop listening and remove the socket."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            uid = _peer_uid(sock) if sock is not None else None
            if uid is not None and uid != os.getuid():
                reply: dict[str, Any] = {"error": "permission denied"}
            else:
                try:
                    line = await asyncio.wait_for(reader.readline(), 10)
                    req = json.loads(line or b"{}")
                    if not isinstance(req, dict):
                        raise ValueError("not a JSON object")
                except (ValueError, asyncio.LimitOverrunError, TimeoutError) as e:
                    reply = {"error": f"bad request: {e}"}
                else:
                    reply = await self._handler(req)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _answers(path: Path) -> bool:
    try:
        await asyncio.wait_for(request(path.parent, {"cmd": "ping"}), 2)
    except (OSError, TimeoutError, ValueError):
        return False
    return True


async def request(state_dir: Path, req: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the daemon of ``state_dir``; raises OSError (e.g. ConnectionRefusedError,
    FileNotFoundError) when no daemon runs there."""

    async def ask() -> dict[str, Any]:
        if os.stat(socket_path(state_dir)).st_uid != os.getuid():
            raise PermissionError(f"{socket_path(state_dir)} belongs to another user")
        reader, writer = await asyncio.open_unix_connection(
            str(socket_path(state_dir)), limit=16 * 1024 * 1024
        )
        try:
            writer.write(json.dumps(req).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        reply = json.loads(line or b"{}")
        if not isinstance(reply, dict):
            raise ValueError("the daemon's reply is not a JSON object")
        return reply

    return await asyncio.wait_for(ask(), timeout)


# -- what the daemon answers ------------------------------------------------------------------
def status_report(d: Daemon) -> dict[str, Any]:
    """The state, what is left each way (queued ops and settling files up, remote changes not
    applied down, minus what in-flight transfers already moved), transfers, conflicts, skipped
    paths (view-only edits kept local apart), exclusions."""
    state, detail = d.state()
    transfers = list(d.progress.transfers.values())
    done = {(t.direction, t.path): t.done for t in transfers}
    ops = d.db.ops()
    up_files = up_bytes = 0
    for op in ops:
        up_files += 1
        if op.kind == "upload":
            e = d.indexer.stat(op.path)
            up_bytes += max(0, (e.size if e is not None else 0) - done.get(("up", op.path), 0))
    for rel in d.pending_paths() - {op.path for op in ops}:
        e = d.indexer.stat(rel)
        if e is not None and e.kind == FILE:
            up_files += 1
            up_bytes += e.size
    down_files = down_bytes = 0
    for r, _s in d.remote_todo():
        down_files += 1
        if not r.deleted and r.kind == FILE:
            rel = d.mounts.local(r.ns_id, r.path) or r.path
            down_bytes += max(0, r.size - done.get(("down", rel), 0))
    skipped = [{"path": p, "reason": why, "at": at} for p, why, at in d.db.skipped()]
    return {
        "folder": str(d.root),
        "state": state,
        "detail": detail,
        "up_to_date": state == "up to date",
        "online": d.online,
        "up": {"files": up_files, "bytes": up_bytes},
        "down": {"files": down_files, "bytes": down_bytes},
        "transfers": [
            {"path": t.path, "direction": t.direction, "done": t.done, "total": t.total}
            for t in transfers
        ],
        "conflicts": {
            "count": d.db.counters().get("conflicts", 0),
            "recent": [{"path": p, "copy": c} for p, c in d.progress.recent_conflicts],
        },
        "skipped": [x for x in skipped if not x["reason"].startswith(VIEW_ONLY)],
        "view_only": [x for x in skipped if x["reason"].startswith(VIEW_ONLY)],
        "excluded": d.selective.paths,
    }


async def control(d: Daemon, req: dict[str, Any]) -> dict[str, Any]:
    """Answer one request on the socket: ping, status, exclude or include."""
    cmd = req.get("cmd")
    paths = req.get("paths") or []
    try:
        if cmd == "ping":
            return {"ok": True}
        if cmd == "status":
            return status_report(d)
        if (
            cmd in ("exclude", "include")
            and isinstance(paths, list)
            and all(isinstance(p, str) for p in paths)
        ):
            cleaned = (d.selective.exclude if cmd == "exclude" else d.selective.include)(paths)
            return {"ok": True, cmd: cleaned, "excluded": d.selective.paths}
    except BadPath as e:
        return {"error": str(e)}
    return {"error": f"unknown request {cmd!r}"}
