"""The in-memory model of the metadata service used by test_meta_model.py: namespaces of rows
looked up by walking names (compared with ``name_key``), and the expectations of a call."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from tessera.paths import name_key, split_path

ROOT = "00000000-0000-0000-0000-000000000000"
FILE, FOLDER = 1, 2
UPSERT, DELETE, MOVE = 1, 2, 3
OK = "OK"
CONTENTS = [b"alpha" * 10, b"beta" * 20, b"gamma" * 30]
HASHES = [hashlib.sha256(c).digest() for c in CONTENTS]
DIGESTS = {i: hashlib.sha256(h).digest() for i, h in enumerate(HASHES)} | {
    -1: hashlib.sha256(b"").digest()
}
ALICE_PATHS = ["a", "A", "b", "x", "X", "a/x", "A/X", "a/y", "b/x", "b/a", "b/a/x", "a/b/x", "y"]
BOB_PATHS = ["x", "a", "a/x", "y"]
BOB_MOUNT_TAILS = ["", "x", "X", "y", "z/x", "a", "a/x"]


def pkey(path: str) -> str:
    return "/".join(name_key(s) for s in split_path(path))


def within(path: str, top: str) -> bool:
    return pkey(path) == pkey(top) or pkey(path).startswith(pkey(top) + "/")


@dataclass
class Row:
    fid: str
    parent: str
    name: str
    kind: int
    deleted: bool = False
    head: str = ""
    seq: int = 0
    mtime: int = 0
    content: int = -1
    mount: str | None = None
    revs: list[tuple[str, bool]] = field(default_factory=list)  # oldest first


class NS:
    """One namespace of the model."""

    def __init__(self, ns_id: str) -> None:
        self.id = ns_id
        self.rows: dict[str, Row] = {}
        self.seq = 0

    def child(self, parent: str, key: str) -> Row | None:
        same = [r for r in self.rows.values() if r.parent == parent and name_key(r.name) == key]
        live = [r for r in same if not r.deleted]
        if live:
            return live[0]
        dead = sorted(same, key=lambda r: (r.seq, r.mtime))
        return dead[-1] if dead else None

    def walk(self, path: str, *, any_: bool = False) -> Row | None:
        row: Row | None = None
        parent = ROOT
        for seg in split_path(path):
            if row is not None and row.mount:
                return None
            row = self.child(parent, name_key(seg))
            if row is None or (row.deleted and not any_):
                return None
            parent = row.fid
        return row

    def path_of(self, row: Row) -> str:
        names = []
        r: Row | None = row
        while r is not None:
            names.append(r.name)
            r = self.rows.get(r.parent)
        return "/".join(reversed(names))

    def below(self, row: Row, *, live_only: bool) -> list[Row]:
        out, todo = [], [row.fid]
        while todo:
            top = todo.pop()
            kids = [
                r
                for r in self.rows.values()
                if r.parent == top and (not live_only or not r.deleted)
            ]
            out.extend(kids)
            todo.extend(k.fid for k in kids)
        return out

    def live(self) -> dict[str, tuple[str, int, str]]:
        return {
            self.path_of(r): (r.fid, r.kind, r.head) for r in self.rows.values() if not r.deleted
        }


@dataclass
class Change:
    """A journal record the model expects, and what to do with the record the server wrote."""

    ns: NS
    op: int
    path: str
    apply: Callable[[str, str, int], None]  # (file id, revision id, seq)


class Outcome(Exception):
    """The model expects the call to fail with this status (and for ABORTED, this head)."""

    def __init__(self, code: grpc.StatusCode, head: str = "") -> None:
        super().__init__(code.name)
        self.code, self.head = code, head
