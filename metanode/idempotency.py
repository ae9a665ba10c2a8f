"""Idempotency keys: a retried mutating call returns its first outcome instead of acting twice.

The key is (user, device_id, operation_id); the outcome is stored as JSON in the same
transaction as the change, so either both exist or neither does. Errors are not stored: a
retry of a call that failed simply runs again. Keys are kept for a week (``gc``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from metanode.db import Conn
from metanode.model import EntryRow, Kind
from metanode.txcache import TxCache
from tessera.errors import InvalidArgument

MAX_KEY = 256


def _keyed(device_id: str, op_id: str) -> bool:
    if len(device_id) > MAX_KEY or len(op_id) > MAX_KEY:
        raise InvalidArgument(f"device_id and operation_id are at most {MAX_KEY} characters")
    return bool(device_id and op_id)


async def prefetch(
    conn: Conn, user_id: uuid.UUID, keys: list[tuple[str, str]], cache: TxCache
) -> None:
    """Load the outcomes of every keyed operation of a batch in one query."""
    cache.keys = {}
    wanted = {k for k in keys if _keyed(*k)}
    if not wanted:
        return
    cur = await conn.execute(
        "SELECT device_id, op_id, kind, outcome FROM idempotency WHERE user_id = %s AND op_id = ANY(%s)",
        (user_id, sorted({op for _, op in wanted})),
    )
    for device_id, op_id, kind, outcome in await cur.fetchall():
        if (device_id, op_id) in wanted:
            cache.keys[(device_id, op_id)] = (kind, json.loads(bytes(outcome)))


async def recall(
    conn: Conn,
    user_id: uuid.UUID,
    device_id: str,
    op_id: str,
    kind: str,
    cache: TxCache | None = None,
) -> Any | None:
    """The stored outcome of this operation, or None if it has not run yet.

    Raises:
        InvalidArgument: If the key was used for a different kind of operation.
    """
    if not _keyed(device_id, op_id):
        return None
    if cache is not None and cache.keys is not None:
        found = cache.keys.get((device_id, op_id))
    else:
        cur = await conn.execute(
            "SELECT kind, outcome FROM idempotency WHERE user_id = %s AND device_id = %s AND op_id = %s",
            (user_id, device_id, op_id),
        )
        row = await cur.fetchone()
        found = (row[0], json.loads(bytes(row[1]))) if row else None
    if found is None:
        return None
    if found[0] != kind:
        raise InvalidArgument(
            f"operation id {op_id!r} of this device was already used for a {found[0]}"
        )
    return found[1]


async def remember(
    conn: Conn,
    user_id: uuid.UUID,
    device_id: str,
    op_id: str,
    kind: str,
    outcome: Any,
    cache: TxCache | None = None,
) -> None:
    """Store the outcome of an operation under its key (no-op without a key)."""
    if not _keyed(device_id, op_id):
        return
    await conn.execute(
        "INSERT INTO idempotency (user_id, device_id, op_id, kind, outcome) VALUES (%s, %s, %s, %s, %s)",
        (user_id, device_id, op_id, kind, json.dumps(outcome).encode()),
    )
    if cache is not None and cache.keys is not None:
        cache.keys[(device_id, op_id)] = (kind, outcome)


def entry_to_json(e: EntryRow) -> dict[str, Any]:
    """An entry as JSON-able data."""
    return {
        "ns": str(e.ns_id),
        "file": str(e.file_id),
        "path": e.path,
        "kind": int(e.kind),
        "size": e.size,
        "rev": str(e.rev_id),
        "at": e.modified_at_us,
        "deleted": e.deleted,
        "seq": e.seq,
        "device": e.device_id,
        "mtime": e.client_mtime_ns,
        "hash": e.content_hash.hex(),
        "x": e.executable,
    }


def entry_from_json(d: dict[str, Any]) -> EntryRow:
    """The inverse of ``entry_to_json``."""
    return EntryRow(
        uuid.UUID(d["ns"]),
        uuid.UUID(d["file"]),
        d["path"],
        Kind(d["kind"]),
        d["size"],
        uuid.UUID(d["rev"]),
        d["at"],
        d["deleted"],
        d["seq"],
        d["device"],
        d["mtime"],
        bytes.fromhex(d["hash"]),
        d.get("x", False),
    )
