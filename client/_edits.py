"""SDK methods that change or describe the tree beyond uploads: delete, move, history,
revision restore, sharing, namespaces and GC. Mixed into ``Client`` (which provides the
channel, the credentials and ``_call``-style error mapping)."""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from client._errors import InvalidRequestError
from client._errors import call_rpc as _call
from client._types import Deletion, Entry
from tessera.pb import meta_pb2


@dataclass(frozen=True)
class Member:
    """A member of a shared folder."""

    user_id: str
    name: str
    role: str  # "owner", "editor" or "viewer"
    namespace_id: str


@dataclass(frozen=True)
class Namespace:
    """A namespace the user sees: the root (``mount_path`` "") or a shared folder mounted there."""

    namespace_id: str
    mount_path: str
    role: str
    head_seq: int
    oldest_seq: int


_ROLES = {
    "owner": meta_pb2.ROLE_OWNER,
    "editor": meta_pb2.ROLE_EDITOR,
    "viewer": meta_pb2.ROLE_VIEWER,
}
_ROLE_NAMES = {v: k for k, v in _ROLES.items()}


class EditCalls:
    """Delete, move, history, restore, share, namespaces, GC."""

    _meta: Any
    _md: Any
    config: Any
    device_id: str

    async def delete(
        self,
        path: str,
        *,
        parent_revision: str = "",
        namespace_id: str = "",
        operation_id: str = "",
        seen_seq: int | None = None,
    ) -> Entry:
        """Delete a file, or a folder with everything in it (a revision: restorable).

        A stale ``parent_revision`` raises ConflictError (the file changed: the edit is kept).
        ``seen_seq`` (see ``delete_seen``) limits a folder delete to what a device had seen.
        """
        return (
            await self.delete_seen(
                path,
                seen_seq=seen_seq,
                parent_revision=parent_revision,
                namespace_id=namespace_id,
                operation_id=operation_id,
            )
        ).entry

    async def delete_seen(
        self,
        path: str,
        *,
        seen_seq: int | None,
        parent_revision: str = "",
        namespace_id: str = "",
        operation_id: str = "",
    ) -> Deletion:
        """Delete what a device had seen: entries inside a folder whose head is newer than its
        journal cursor ``seen_seq`` (added or changed elsewhere since) are kept, with the folders
        on their way; ``None`` deletes everything as of this call (``tessera rm``)."""
        req = meta_pb2.DeleteRequest(
            namespace_id=namespace_id,
            path=path,
            parent_revision=parent_revision,
            device_id=self.device_id,
            operation_id=operation_id or uuid.uuid4().hex,
        )
        if seen_seq is not None:
            req.seen_seq = seen_seq
        resp = await _call(self._meta.Delete(req, metadata=self._md, timeout=self.config.timeout))
        return Deletion(Entry.from_pb(resp.entry), resp.kept)

    async def move(
        self,
        src: str,
        dst: str,
        *,
        parent_revision: str = "",
        namespace_id: str = "",
        operation_id: str = "",
    ) -> Entry:
        """Move or rename a file or folder (it keeps its file id: history follows it)."""
        req = meta_pb2.MoveRequest(
            namespace_id=namespace_id,
            from_path=src,
            to_path=dst,
            parent_revision=parent_revision,
            device_id=self.device_id,
            operation_id=operation_id or uuid.uuid4().hex,
        )
        return Entry.from_pb(
            (
                await _call(self._meta.Move(req, metadata=self._md, timeout=self.config.timeout))
            ).entry
        )

    async def restore(
        self, path: str, revision: str, *, namespace_id: str = "", operation_id: str = ""
    ) -> Entry:
        """Make an earlier revision the head again (a new revision; no data is copied)."""
        req = meta_pb2.RestoreRequest(
            namespace_id=namespace_id,
            path=path,
            revision_id=revision,
            device_id=self.device_id,
            operation_id=operation_id or uuid.uuid4().hex,
        )
        return Entry.from_pb(
            (
                await _call(self._meta.Restore(req, metadata=self._md, timeout=self.config.timeout))
            ).entry
        )

    async def history(
        self, path: str, *, limit: int = 0, namespace_id: str = ""
    ) -> builtins.list[Entry]:
        """The revisions of a file, newest first (deletes included), each at its path then."""
        req = meta_pb2.HistoryRequest(namespace_id=namespace_id, path=path, limit=limit)
        resp = await _call(self._meta.History(req, metadata=self._md, timeout=self.config.timeout))
        return [Entry.from_pb(e) for e in resp.revisions]

    async def share(
        self,
        path: str,
        user: str,
        *,
        role: str = "editor",
        namespace_id: str = "",
        operation_id: str = "",
    ) -> str:
        """Share a folder or a file with a user as "editor" or "viewer" (again: change the role).

        Returns:
            The shared folder's namespace id; for a file, its share id (the member passes it
            as ``namespace_id`` to reach the file, see ``shared_files``).
        """
        if role not in ("editor", "viewer"):
            raise InvalidRequestError(
                f"role must be editor or viewer, not {role!r}", grpc.StatusCode.INVALID_ARGUMENT
            )
        req = meta_pb2.ShareRequest(
            namespace_id=namespace_id,
            path=path,
            user_name=user,
            role=_ROLES[role],
            device_id=self.device_id,
            operation_id=operation_id or uuid.uuid4().hex,
        )
        resp = await _call(self._meta.Share(req, metadata=self._md, timeout=self.config.timeout))
        return str(resp.shared_namespace_id)

    async def unshare(
        self, path: str, user: str, *, namespace_id: str = "", operation_id: str = ""
    ) -> None:
        """Remove a member from a shared folder (your own name: leave it)."""
        req = meta_pb2.UnshareRequest(
            namespace_id=namespace_id,
            path=path,
            user_name=user,
            device_id=self.device_id,
            operation_id=operation_id or uuid.uuid4().hex,
        )
        await _call(self._meta.Unshare(req, metadata=self._md, timeout=self.config.timeout))

    async def members(self, path: str = "", *, namespace_id: str = "") -> builtins.list[Member]:
        """The members of the (shared) folder holding ``path``, owner first."""
        req = meta_pb2.ListMembersRequest(namespace_id=namespace_id, path=path)
        resp = await _call(
            self._meta.ListMembers(req, metadata=self._md, timeout=self.config.timeout)
        )
        return [
            Member(m.user_id, m.user_name, _ROLE_NAMES.get(m.role, "?"), m.namespace_id)
            for m in resp.members
        ]

    async def namespaces(self) -> builtins.list[Namespace]:
        """Every namespace this user sees: the root (mount path "") and each shared folder."""
        resp = await _call(
            self._meta.ListNamespaces(
                meta_pb2.ListNamespacesRequest(), metadata=self._md, timeout=self.config.timeout
            )
        )
        return [
            Namespace(
                n.namespace_id, n.mount_path, _ROLE_NAMES.get(n.role, "?"), n.head_seq, n.oldest_seq
            )
            for n in resp.namespaces
        ]

    async def run_gc(
        self,
        *,
        retention_seconds: int | None = None,
        grace_seconds: int | None = None,
        journal_retention_seconds: int | None = None,
        namespace_id: str = "",
    ) -> meta_pb2.RunGCResponse:
        """Admin: one garbage-collection pass now; retention and grace override the node's settings."""
        req = meta_pb2.RunGCRequest(namespace_id=namespace_id)
        if retention_seconds is not None:
            req.revision_retention_seconds = retention_seconds
        if grace_seconds is not None:
            req.grace_seconds = grace_seconds
        if journal_retention_seconds is not None:
            req.journal_retention_seconds = journal_retention_seconds
        return await _call(
            self._meta.RunGC(req, metadata=self._md, timeout=max(self.config.timeout, 300.0))
        )
