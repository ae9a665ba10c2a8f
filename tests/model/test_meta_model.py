"""Model-based test of the metadata service (hypothesis RuleBasedStateMachine).

Two users (Alice with two devices, Bob with one) commit, delete, move, restore, make folders,
share, re-share and unshare, through the real metanode over gRPC on the real PostgreSQL. A
simple in-memory model predicts the outcome of every call (success or the precise status,
with the head revision of a conflict) and the exact journal records it appends. After every
step the trees, the histories of every live entry and the journal heads must agree: no
revision is ever lost and each journal is gap-free.

The model is deliberately naive: rows with a parent, a name, a kind, a deleted flag and a list
of revisions, looked up by walking names (compared with ``name_key``). Ids the server assigns
(new file ids, revision ids) are adopted from the journal records the call appended, matched
one to one by (op, path). Receipts are signed with the cluster secret: this test is about the
metadata, not the block store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tessera.auth import Signer
from tessera.paths import join_path, name_key, numbered_name, split_path
from tessera.pb import common_pb2, meta_pb2, meta_pb2_grpc
from tests.model.meta_state import (
    ALICE_PATHS,
    BOB_MOUNT_TAILS,
    BOB_PATHS,
    CONTENTS,
    DELETE,
    DIGESTS,
    FILE,
    FOLDER,
    HASHES,
    MOVE,
    NS,
    OK,
    ROOT,
    UPSERT,
    Change,
    Outcome,
    Row,
    pkey,
    within,
)

pytestmark = pytest.mark.cluster


def make_pair(meta: str, admin: str) -> list[tuple[str, str, str]]:
    """Two fresh users: (name, user id, root namespace id) each."""
    out = []
    with grpc.insecure_channel(meta) as channel:
        stub = meta_pb2_grpc.MetadataStub(channel)
        for user in ("alice", "bob"):
            name = f"{user}{uuid.uuid4().hex[:8]}"
            req = meta_pb2.CreateUserRequest(name=name, password=uuid.uuid4().hex)
            resp = stub.CreateUser(req, metadata=(("authorization", f"Bearer {admin}"),))
            out.append((name, resp.user_id, resp.root_namespace_id))
    return out


class MetaModel(RuleBasedStateMachine):
    meta: str = ""
    admin: str = ""
    secret: str = ""
    pool: list[list[tuple[str, str, str]]] = []

    def __init__(self) -> None:
        super().__init__()
        self.channel = grpc.insecure_channel(self.meta)
        self.stub = meta_pb2_grpc.MetadataStub(self.channel)
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.roots: dict[str, NS] = {}
        pair = self.pool.pop() if self.pool else make_pair(self.meta, self.admin)
        signer = Signer(self.secret)
        for user, (name, user_id, root) in zip(("alice", "bob"), pair, strict=True):
            # A token minted with the cluster secret: a login per example would cost a slow KDF.
            self.tokens[user] = signer.issue_token(user_id, ttl=3600)[0]
            self.ids[user], self.names[user], self.roots[user] = user_id, name, NS(root)
        self.shared: NS | None = None
        self.bob_role = 0  # 0: not a member
        self.seen: dict[str, dict[str, str]] = {"a1": {}, "a2": {}, "b1": {}}
        self.step = 0
        self.signer = signer
        self.parent_rev = ""
        self.dirty = True
        self.rev_content: dict[str, int] = {}  # which content each file revision holds

    # -- plumbing ------------------------------------------------------------------------------
    @staticmethod
    def _md(token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)

    def _user(self, device: str) -> str:
        return "bob" if device.startswith("b") else "alice"

    def _mounts(self, user: str) -> list[tuple[NS, Row]]:
        root = self.roots[user]
        return [
            (self.shared, r)
            for r in root.rows.values()
            if r.mount and not r.deleted and self.shared
        ]  # type: ignore[misc]

    def _resolve(self, user: str, path: str, *, into: bool) -> tuple[NS, str]:
        root = self.roots[user]
        for ns, row in self._mounts(user):
            top = root.path_of(row)
            if within(path, top) and (into or pkey(path) != pkey(top)):
                return ns, "/".join(split_path(path)[len(split_path(top)) :])
        return root, path

    def _role(self, user: str, ns: NS, *, write: bool) -> None:
        if ns is self.shared and user == "bob" and write and self.bob_role == meta_pb2.ROLE_VIEWER:
            raise Outcome(grpc.StatusCode.PERMISSION_DENIED)

    def _run(self, plan: Callable[[], list[Change]], call: Callable[[], Any]) -> Any:
        """Predict with ``plan``, call the server, compare, then adopt the journal records."""
        self.step += 1
        self.dirty = True
        try:
            changes = plan()
            expected: Outcome | None = None
        except Outcome as o:
            changes, expected = [], o
        try:
            result = call()
            got = OK
        except grpc.RpcError as e:
            result, got = None, e.code()
            head = dict(e.trailing_metadata() or ()).get("tessera-head-revision", "")
        want = expected.code if expected else OK
        assert got == want, (
            f"expected {want}, server said {got}: {getattr(result, 'details', lambda: '')()}"
        )
        if expected is not None and expected.code is grpc.StatusCode.ABORTED:
            assert head == expected.head
        by_ns: dict[str, list[Change]] = {}
        for ch in changes:
            by_ns.setdefault(ch.ns.id, []).append(ch)
        for nsid, expected_changes in by_ns.items():
            ns = expected_changes[0].ns
            token = self.tokens["bob"] if ns is self.roots["bob"] else self.tokens["alice"]
            resp = self.stub.ListChanges(
                meta_pb2.ListChangesRequest(
                    cursor=common_pb2.Cursor(namespace_id=nsid, seq=ns.seq), limit=1000
                ),
                metadata=self._md(token),
            )
            records = list(resp.changes)
            assert [r.seq for r in records] == list(range(ns.seq + 1, ns.seq + 1 + len(records))), (
                "journal has a gap"
            )
            assert sorted((r.op, pkey(r.entry.path)) for r in records) == sorted(
                (c.op, pkey(c.path)) for c in expected_changes
            )
            match = {(c.op, pkey(c.path)): c for c in expected_changes}
            for r in records:
                c = match[(r.op, pkey(r.entry.path))]
                assert r.entry.path == c.path, (r.entry.path, c.path)
                c.apply(r.entry.file_id, r.entry.revision_id, r.seq)
            ns.seq = records[-1].seq
        return result

    def _touch(self, row: Row, rev: str, seq: int, *, deleted: bool) -> None:
        row.head, row.seq, row.mtime, row.deleted = rev, seq, self.step, deleted
        row.revs.append((rev, deleted))

    def _ensure(self, ns: NS, parts: list[str], chain: list[str], changes: list[Change]) -> str:
        """Plan mkdir -p of ``parts``: returns the stored path; ``chain`` gets the folder ids
        (or "" for folders created by the call, filled in when their record is adopted)."""
        parent, stored = ROOT, ""
        for seg in parts:
            row = ns.child(parent, name_key(seg)) if parent else None
            if row is not None and not row.deleted:
                stored = join_path(stored, row.name)
                if row.kind == FILE or row.mount:
                    raise Outcome(grpc.StatusCode.FAILED_PRECONDITION)
                parent = row.fid
                chain.append(parent)
                continue
            stored = join_path(stored, seg)
            reuse = row if row is not None and row.kind == FOLDER and not row.mount else None
            index = len(chain)
            chain.append(reuse.fid if reuse is not None else "")

            def made(
                fid: str,
                rev: str,
                seq: int,
                reuse: Row | None = reuse,
                seg: str = seg,
                index: int = index,
            ) -> None:
                up = chain[index - 1] if index else ROOT
                if reuse is not None:
                    reuse.name, reuse.parent = seg, up
                    self._touch(reuse, rev, seq, deleted=False)
                    assert fid == reuse.fid
                else:
                    ns.rows[fid] = Row(fid, up, seg, FOLDER)
                    self._touch(ns.rows[fid], rev, seq, deleted=False)
                chain[index] = fid

            changes.append(Change(ns, UPSERT, stored, made))
            # Below a new folder nothing exists; a resurrected one still has its deleted entries.
            parent = reuse.fid if reuse is not None else ""
        return stored

    # -- rules ---------------------------------------------------------------------------------
    def _paths(self, data: st.DataObject, device: str) -> str:
        """A path for this device's user: from a small fixed set (to make clashes likely) or,
        half the time, one that exists or existed in what the user sees."""
        user = self._user(device)
        options = list(ALICE_PATHS if user == "alice" else BOB_PATHS)
        root = self.roots[user]
        known = [root.path_of(r) for r in root.rows.values()]
        for shared, row in self._mounts(user):
            top = root.path_of(row)
            options += [join_path(top, t) for t in BOB_MOUNT_TAILS]
            known += [join_path(top, shared.path_of(r)) for r in shared.rows.values()]
        if known:
            return data.draw(
                st.one_of(st.sampled_from(options), st.sampled_from(sorted(set(known))))
            )
        return data.draw(st.sampled_from(options))

    @rule(
        device=st.sampled_from(["a1", "a2", "b1"]),
        data=st.data(),
        content=st.integers(0, 2),
        fresh=st.booleans(),
    )
    def commit(self, device: str, data: st.DataObject, content: int, fresh: bool) -> None:
        user, path = self._user(device), self._paths(data, device)
        ns, rest = self._resolve(user, path, into=True)
        chain: list[str] = []

        def plan() -> list[Change]:
            if not rest:
                raise Outcome(grpc.StatusCode.FAILED_PRECONDITION)
            self._role(user, ns, write=True)
            changes: list[Change] = []
            parts = split_path(rest)
            folder_path = self._ensure(ns, parts[:-1], chain, changes)
            parent = chain[-1] if chain else ROOT
            existing = ns.child(parent, name_key(parts[-1])) if parent else None
            name = parts[-1]
            if existing is not None and not existing.deleted:
                if existing.kind == FOLDER:
                    raise Outcome(grpc.StatusCode.FAILED_PRECONDITION)
                if self.parent_rev != existing.head:
                    raise Outcome(grpc.StatusCode.ABORTED, existing.head)
                name = existing.name
            elif existing is not None and (existing.kind != FILE or existing.mount):
                existing = None

            def done(fid: str, rev: str, seq: int, row: Row | None = existing) -> None:
                if row is None:
                    row = ns.rows[fid] = Row(fid, chain[-1] if chain else ROOT, name, FILE)
                assert fid == row.fid
                row.name, row.parent, row.content = name, chain[-1] if chain else ROOT, content
                self._touch(row, rev, seq, deleted=False)
                self.seen[device][fid] = rev
                self.rev_content[rev] = content

            changes.append(Change(ns, UPSERT, join_path(folder_path, name), done))
            return changes

        target = ns.walk(rest) if rest else None
        self.parent_rev = "" if fresh or target is None else self.seen[device].get(target.fid, "")
        req = meta_pb2.CommitRequest(
            path=path,
            parent_revision=self.parent_rev,
            device_id=device,
            operation_id=uuid.uuid4().hex,
            blocklist=common_pb2.Blocklist(
                chunks=[common_pb2.ChunkRef(hash=HASHES[content], size=len(CONTENTS[content]))]
            ),
            receipts=[self._receipt(user, content)],
        )
        self._run(plan, lambda: self.stub.Commit(req, metadata=self._md(self.tokens[user])))

    def _receipt(self, user: str, content: int) -> common_pb2.Receipt:
        exp, sig = self.signer.sign_receipt(
            HASHES[content], len(CONTENTS[content]), self.ids[user], 3600
        )
        return common_pb2.Receipt(
            hash=HASHES[content],
            size=len(CONTENTS[content]),
            user_id=self.ids[user],
            expires_at=exp,
            signature=sig,
        )

    @rule(device=st.sampled_from(["a1", "a2", "b1"]), data=st.data())
    def mkdir(self, device: str, data: st.DataObject) -> None:
        user, path = self._user(device), self._paths(data, device)
        ns, rest = self._resolve(user, path, into=True)

        def plan() -> list[Change]:
            if not rest:
                return []
            self._role(user, ns, write=True)
            changes: list[Change] = []
            self._ensure(ns, split_path(rest), [], changes)
            return changes

        req = meta_pb2.MakeFolderRequest(path=path, device_id=device, operation_id=uuid.uuid4().hex)
        self._run(plan, lambda: self.stub.MakeFolder(req, metadata=self._md(self.tokens[user])))

    @rule(device=st.sampled_from(["a1", "a2", "b1"]), data=st.data(), use_seen=st.booleans())
    def delete(self, device: str, data: st.DataObject, use_seen: bool) -> None:
        user, path = self._user(device), self._paths(data, device)
        ns, rest = self._resolve(user, path, into=False)
        row = ns.walk(rest)
        parent = self.seen[device].get(row.fid, "") if row is not None and use_seen else ""

        def plan() -> list[Change]:
            self._role(user, ns, write=True)
            if row is None:
                raise Outcome(grpc.StatusCode.NOT_FOUND)
            if parent and parent != row.head:
                raise Outcome(grpc.StatusCode.ABORTED, row.head)
            inside = ns.below(row, live_only=True) if row.kind == FOLDER else []
            if row.mount or any(r.mount for r in inside):
                raise Outcome(grpc.StatusCode.FAILED_PRECONDITION)
            changes = []
            for r in [*inside, row]:
                changes.append(
                    Change(
                        ns,
                        DELETE,
                        ns.path_of(r),
                        lambda fid, rev, seq, r=r: self._touch(r, rev, seq, deleted=True),
                    )
                )
            return changes

        req = meta_pb2.DeleteRequest(
            path=path, parent_revision=parent, device_id=device, operation_id=uuid.uuid4().hex
        )
        self._run(plan, lambda: self.stub.Delete(req, metadata=self._md(self.tokens[user])))

    @rule(device=st.sampled_from(["a1", "a2", "b1"]), data=st.data())
    def move(self, device: str, data: st.DataObject) -> None:
        user = self._user(device)
        src, dst = self._paths(data, device), self._paths(data, device)
        a_ns, a = self._resolve(user, src, into=False)
        b_ns, b = self._resolve(user, dst, into=False)
        chain: list[str] = []

        def plan() -> list[Change]:
            self._role(user, a_ns, write=True)
            if a_ns is not b_ns:
                raise Outcome(grpc.StatusCode.FAILED_PRECONDITION)
            if pkey(b).startswith(pkey(a) + "/"):
                raise Outcome(grpc.StatusCode.INVALID_ARGUMENT)
            row = a_ns.walk(a)
            if row is None:
                raise Outcome(grpc.StatusCode.NOT_FOUND)
            changes: list[Change] = []
            parts = split_path(b)
            folder_path = self._ensure(a_ns, parts[:-1], chain, changes)
            parent = chain[-1] if chain else ROOT
            if parent == row.parent and parts[-1] == row.name:
                return changes
            clash = a_ns.child(parent, name_key(parts[-1])) if parent else None
            if clash is not None and not clash.deleted and clash is not row:
                raise Outcome(grpc.StatusCode.ALREADY_EXISTS)

            def done(fid: str, rev: str, seq: int) -> None:
                assert fid == row.fid
                row.parent, row.name = chain[-1] if chain else ROOT, parts[-1]
                self._touch(row, rev, seq, deleted=False)
                self.rev_content[rev] = row.content

            changes.append(Change(a_ns, MOVE, join_path(folder_path, parts[-1]), done))
            return changes

        req = meta_pb2.MoveRequest(
            from_path=src, to_path=dst, device_id=device, operation_id=uuid.uuid4().hex
        )
        self._run(plan, lambda: self.stub.Move(req, metadata=self._md(self.tokens[user])))

    @rule(device=st.sampled_from(["a1", "a2", "b1"]), data=st.data())
    def restore(self, device: str, data: st.DataObject) -> None:
        user, path = self._user(device), self._paths(data, device)
        ns, rest = self._resolve(user, path, into=False)
        row = ns.walk(rest, any_=True)
        revs = row.revs if row is not None else []
        pick = data.draw(st.integers(-1, len(revs) - 1))
        rev = revs[pick][0] if pick >= 0 else str(uuid.uuid4())
        chain: list[str] = []

        def plan() -> list[Change]:
            self._role(user, ns, write=True)
            if row is None:
                raise Outcome(grpc.StatusCode.NOT_FOUND)
            if row.mount:
                raise Outcome(grpc.StatusCode.FAILED_PRECONDITION)
            if pick < 0:
                raise Outcome(grpc.StatusCode.NOT_FOUND)
            if revs[pick][1]:
                raise Outcome(grpc.StatusCode.FAILED_PRECONDITION)
            changes: list[Change] = []
            stored = ns.path_of(row)
            folder_path = self._ensure(ns, split_path(stored)[:-1], chain, changes)
            content = self.rev_content.get(rev, -1)

            def done(fid: str, r: str, seq: int) -> None:
                assert fid == row.fid and (chain[-1] if chain else ROOT) == row.parent
                row.content = content
                self._touch(row, r, seq, deleted=False)
                self.rev_content[r] = content

            changes.append(Change(ns, UPSERT, join_path(folder_path, row.name), done))
            return changes

        req = meta_pb2.RestoreRequest(
            path=path, revision_id=rev, device_id=device, operation_id=uuid.uuid4().hex
        )
        self._run(plan, lambda: self.stub.Restore(req, metadata=self._md(self.tokens[user])))

    @rule(device=st.sampled_from(["a1", "a2", "b1"]))
    def sync(self, device: str) -> None:
        """The device catches up: it now knows every head."""
        for ns in self._visible(self._user(device)):
            for r in ns.rows.values():
                self.seen[device][r.fid] = r.head

    def _visible(self, user: str) -> list[NS]:
        out = [self.roots[user]]
        if self.shared is not None and (user == "alice" or self.bob_role):
            out.append(self.shared)
        return out

    @precondition(lambda self: self.shared is None)
    @rule(data=st.data(), viewer=st.booleans())
    def share(self, data: st.DataObject, viewer: bool) -> None:
        folders = sorted(
            self.roots["alice"].path_of(r)
            for r in self.roots["alice"].rows.values()
            if r.kind == FOLDER
        )
        fixed = st.sampled_from(["a", "b", "A", "b/a", "a/b", "x"])
        path = data.draw(st.one_of(fixed, st.sampled_from(folders)) if folders else fixed)
        role = meta_pb2.ROLE_VIEWER if viewer else meta_pb2.ROLE_EDITOR
        alice = self.roots["alice"]
        row = alice.walk(path)

        def plan() -> list[Change]:
            if row is None:
                raise Outcome(grpc.StatusCode.NOT_FOUND)
            return []  # a folder's namespace id is known only after the call: see below

        resp = self._run(
            plan,
            lambda: self.stub.Share(
                meta_pb2.ShareRequest(path=path, user_name=self.names["bob"], role=role),
                metadata=self._md(self.tokens["alice"]),
            ),
        )
        if resp is None or row is None or row.kind == FILE:
            return  # a file share is a grant: the file stays in alice's tree, no journal record
        shared = NS(resp.shared_namespace_id)
        top = alice.path_of(row)
        inside = alice.below(row, live_only=False)
        for r in inside:
            del alice.rows[r.fid]
            shared.rows[r.fid] = r
            if r.parent == row.fid:
                r.parent = ROOT
            if r.deleted:
                r.seq = 0
        self.shared, self.bob_role = shared, role
        changes = [
            Change(
                shared,
                UPSERT,
                shared.path_of(r),
                lambda fid, rev, seq, r=r: self._snap(r, fid, rev, seq),
            )
            for r in inside
            if not r.deleted
        ]
        changes.append(
            Change(alice, UPSERT, top, lambda fid, rev, seq: self._mounted(row, fid, rev, seq))
        )
        changes.append(self._bob_mount(row.name))
        self._adopt(changes)

    def _snap(self, r: Row, fid: str, rev: str, seq: int) -> None:
        assert (fid, rev) == (r.fid, r.head)
        r.seq = seq

    def _mounted(self, row: Row, fid: str, rev: str, seq: int) -> None:
        assert fid == row.fid
        row.mount = "shared"
        self._touch(row, rev, seq, deleted=False)

    def _bob_mount(self, name: str) -> Change:
        bob = self.roots["bob"]
        taken = {name_key(r.name) for r in bob.rows.values() if r.parent == ROOT and not r.deleted}
        free, n = name, 1
        while name_key(free) in taken:
            n += 1
            free = numbered_name(name, n)

        def made(fid: str, rev: str, seq: int) -> None:
            bob.rows[fid] = Row(fid, ROOT, free, FOLDER, mount="shared")
            self._touch(bob.rows[fid], rev, seq, deleted=False)

        return Change(bob, UPSERT, free, made)

    def _adopt(self, changes: list[Change]) -> None:
        """Check and adopt records of a call whose plan could only be made after it returned."""
        self._run(lambda: changes, lambda: None)
        self.step -= 1

    @precondition(lambda self: self.shared is not None)
    @rule(viewer=st.booleans())
    def reshare(self, viewer: bool) -> None:
        role = meta_pb2.ROLE_VIEWER if viewer else meta_pb2.ROLE_EDITOR
        assert self.shared is not None
        changes = [] if self.bob_role else [self._bob_mount(self._shared_name())]
        self._run(
            lambda: changes,
            lambda: self.stub.Share(
                meta_pb2.ShareRequest(
                    namespace_id=self.shared.id, user_name=self.names["bob"], role=role
                ),
                metadata=self._md(self.tokens["alice"]),
            ),
        )
        self.bob_role = role

    def _shared_name(self) -> str:
        row = next(r for r in self.roots["alice"].rows.values() if r.mount)
        return row.name

    @precondition(lambda self: self.shared is not None)
    @rule(by_bob=st.booleans())
    def unshare(self, by_bob: bool) -> None:
        assert self.shared is not None
        bob = self.roots["bob"]
        user = "bob" if by_bob else "alice"

        def plan() -> list[Change]:
            if not self.bob_role:
                raise Outcome(grpc.StatusCode.NOT_FOUND)
            mount = next(r for r in bob.rows.values() if r.mount and not r.deleted)
            return [
                Change(
                    bob,
                    DELETE,
                    bob.path_of(mount),
                    lambda fid, rev, seq: self._touch(mount, rev, seq, deleted=True),
                )
            ]

        self._run(
            plan,
            lambda: self.stub.Unshare(
                meta_pb2.UnshareRequest(namespace_id=self.shared.id, user_name=self.names["bob"]),
                metadata=self._md(self.tokens[user]),
            ),
        )
        self.bob_role = 0

    # -- invariants ------------------------------------------------------------------------------
    def _server_tree(self, ns: NS, token: str) -> dict[str, tuple[str, int, str, bytes]]:
        out: dict[str, tuple[str, int, str, bytes]] = {}
        todo = [""]
        mounts = {pkey(ns.path_of(r)) for r in ns.rows.values() if r.mount and not r.deleted}
        while todo:
            folder = todo.pop()
            resp = self.stub.List(
                meta_pb2.ListRequest(namespace_id=ns.id, path=folder, limit=1000),
                metadata=self._md(token),
            )
            for e in resp.entries:
                out[e.path] = (e.file_id, e.kind, e.revision_id, e.content_hash)
                if e.kind == FOLDER and pkey(e.path) not in mounts:
                    todo.append(e.path)
        return out

    @invariant()
    def trees_and_heads_agree(self) -> None:
        """After every call: journal heads, and each tree with each entry's head and content."""
        if not self.dirty:
            return
        self.dirty = False
        for user in ("alice", "bob"):
            resp = self.stub.ListNamespaces(
                meta_pb2.ListNamespacesRequest(), metadata=self._md(self.tokens[user])
            )
            assert {n.namespace_id: n.head_seq for n in resp.namespaces} == {
                ns.id: ns.seq for ns in self._visible(user)
            }
        for ns, token in self._owned():
            got = self._server_tree(ns, token)
            want = {
                p: (fid, kind, head, DIGESTS[ns.rows[fid].content])
                for p, (fid, kind, head) in ns.live().items()
            }
            assert got == want
        if self.step % 4 == 0:
            self.histories_agree()

    def _owned(self) -> list[tuple[NS, str]]:
        out = [(self.roots["alice"], self.tokens["alice"]), (self.roots["bob"], self.tokens["bob"])]
        if self.shared is not None:
            out.append((self.shared, self.tokens["bob"] if self.bob_role else self.tokens["alice"]))
        return out

    def histories_agree(self) -> None:
        """Every revision the model knows of every live entry is in its history, in order."""
        for ns, token in self._owned():
            for path, (fid, _, _) in ns.live().items():
                hist = self.stub.History(
                    meta_pb2.HistoryRequest(namespace_id=ns.id, path=path), metadata=self._md(token)
                )
                # a folder's history also lists what was ever inside it (issue 13): its own
                # revisions are the ones with its file id
                got = [(e.revision_id, e.deleted) for e in hist.revisions if e.file_id == str(fid)]
                assert got == list(reversed(ns.rows[fid].revs)), f"history of {path}"

    def teardown(self) -> None:
        try:
            self.histories_agree()
            for ns, token in self._owned():
                for r in ns.rows.values():
                    if r.kind == FILE and not r.deleted:
                        got = self.stub.GetFile(
                            meta_pb2.GetFileRequest(namespace_id=ns.id, path=ns.path_of(r)),
                            metadata=self._md(token),
                        )
                        assert [c.hash for c in got.blocklist.chunks] == [HASHES[r.content]]
        finally:
            self.channel.close()


EXAMPLES = int(os.environ.get("TESSERA_MODEL_EXAMPLES", "8"))
STEPS = int(os.environ.get("TESSERA_MODEL_STEPS", "40"))


@pytest.mark.timeout(600)
def test_metadata_service_matches_the_model(cluster) -> None:  # type: ignore[no-untyped-def]
    MetaModel.meta, MetaModel.admin, MetaModel.secret = (
        cluster.meta_address,
        cluster.admin_token,
        cluster.secret,
    )
    with ThreadPoolExecutor(4) as pool:  # user creation hashes a password (slow KDF): in parallel
        MetaModel.pool = list(
            pool.map(
                lambda _: make_pair(cluster.meta_address, cluster.admin_token), range(EXAMPLES)
            )
        )
    run = MetaModel.TestCase
    run.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    run().runTest()
