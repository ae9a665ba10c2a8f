"""What every Metadata RPC shares: proto conversion, edge validation, the caller, transactions,
path resolution and notifications. The handler objects (``service_accounts``,
``service_cluster``, ``service_reads``, ``service_writes``) are ``Handlers`` on one
``ServiceState``; ``servicer.MetadataService`` serves each RPC with one of them.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import aetcd
import grpc

from metanode import accounts
from metanode.blocks import BlockClient
from metanode.db import Conn, Database
from metanode.gc import Collector
from metanode.model import ChangeRow, EntryRow, Kind
from metanode.notify import Notifier
from metanode.sharing import Target, resolve
from tessera.auth import AuthError, Principal, Signer
from tessera.errors import InvalidArgument, PermissionDenied, Unauthenticated
from tessera.membership import Watcher
from tessera.paths import InvalidPath, normalize_path
from tessera.pb import common_pb2
from tessera.rpc import ON_BEHALF_TOKEN_KEY, current_principal

T = TypeVar("T")
ON_BEHALF_KEY = "x-tessera-user"


def entry_pb(e: EntryRow) -> common_pb2.Entry:
    """An entry as its proto."""
    return common_pb2.Entry(
        namespace_id=str(e.ns_id),
        file_id=str(e.file_id),
        path=e.path,
        name=e.name,
        kind=common_pb2.ENTRY_KIND_FOLDER if e.kind is Kind.FOLDER else common_pb2.ENTRY_KIND_FILE,
        size=e.size,
        revision_id=str(e.rev_id),
        modified_at_us=e.modified_at_us,
        deleted=e.deleted,
        device_id=e.device_id,
        seq=e.seq,
        client_mtime_ns=e.client_mtime_ns,
        content_hash=e.content_hash,
        executable=e.executable,
    )


def change_pb(c: ChangeRow) -> common_pb2.Change:
    """A journal record as its proto."""
    return common_pb2.Change(
        namespace_id=str(c.ns_id),
        seq=c.seq,
        op=int(c.op),
        entry=entry_pb(c.entry),
        old_path=c.old_path,
    )


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """A UUID from a request field, or INVALID_ARGUMENT naming the field."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{what} {value!r} is not a valid id") from None


def opt_uuid(value: str, what: str) -> uuid.UUID | None:
    """Like parse_uuid, with "" meaning None."""
    return parse_uuid(value, what) if value else None


def parse_path(value: str, *, allow_root: bool = False) -> str:
    """A normalised path, or INVALID_ARGUMENT with the one-line reason."""
    try:
        return normalize_path(value, allow_root=allow_root)
    except InvalidPath as e:
        raise InvalidArgument(str(e)) from None


@dataclass
class ServiceState:
    """What every handler of the Metadata service shares (built once by ``MetadataService``)."""

    db: Database
    signer: Signer
    token_ttl: int
    ticket_ttl: int
    block_watch: Watcher | None
    sync_watch: Watcher | None
    notifier: Notifier
    collector: Collector | None = None
    blocks: BlockClient | None = None
    etcd: aetcd.Client | None = None
    meta_watch: Watcher | None = None  # the metanodes' membership, listed in ClusterInfo
    # One lock per user with writes in flight; entries vanish once no call holds them.
    write_locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )


class Handlers:
    """Base of the Metadata service's handler objects: the shared state and helpers.

    Each handler class (``AccountRpcs``, ``ReadRpcs``...) serves a few RPCs; ``MetadataService``
    holds one object of each, all on the same ``ServiceState``.
    """

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.db = state.db
        self.signer = state.signer
        self.token_ttl = state.token_ttl
        self.ticket_ttl = state.ticket_ttl
        self.block_watch = state.block_watch
        self.sync_watch = state.sync_watch
        self.notifier = state.notifier
        self._write_locks = state.write_locks
        self.collector = state.collector
        self.blocks = state.blocks
        self.etcd = state.etcd
        self.meta_watch = state.meta_watch

    def _caller(self, context: grpc.aio.ServicerContext) -> uuid.UUID:
        """The user a call acts for: the token's user, or for a node the x-tessera-user it names."""
        principal = current_principal()
        if principal.is_node:
            for key, value in context.invocation_metadata() or ():
                if key == ON_BEHALF_KEY:
                    return parse_uuid(str(value), "user")
            raise InvalidArgument(f"node calls must name a user in {ON_BEHALF_KEY}")
        return parse_uuid(principal.user_id, "user")

    def _acting(self, context: grpc.aio.ServicerContext, user_id: uuid.UUID) -> Principal | None:
        """The user credential behind a call: the caller's, or the one a node forwarded."""
        principal = current_principal()
        if not principal.is_node:
            return principal
        for key, value in context.invocation_metadata() or ():
            if key == ON_BEHALF_TOKEN_KEY:
                try:
                    acting = self.signer.verify_token(str(value))
                except AuthError as e:
                    raise Unauthenticated(f"{e}: log in again (tessera login)") from None
                if acting.is_node or acting.user_id != str(user_id):
                    raise InvalidArgument(f"{ON_BEHALF_TOKEN_KEY} is not {ON_BEHALF_KEY}'s token")
                return acting
        return None

    async def _txn(
        self, context: grpc.aio.ServicerContext, fn: Callable[[Conn, uuid.UUID], Awaitable[T]]
    ) -> T:
        """Run ``fn(conn, user_id)`` in one serializable transaction, after the revocation check."""
        return await self._run_txn(context, fn, write=False)

    async def _write_txn(
        self, context: grpc.aio.ServicerContext, fn: Callable[[Conn, uuid.UUID], Awaitable[T]]
    ) -> T:
        """Like ``_txn`` for calls that write: one user's writes queue on this metanode.

        A user's devices all write the user's namespaces, and every commit there bumps the
        same journal counter, so under SERIALIZABLE they would abort each other and retry
        (and under load give up). Queuing them in-process removes those conflicts; writes
        across metanodes or users still serialize in the database, with retries.
        """
        return await self._run_txn(context, fn, write=True)

    async def _run_txn(
        self,
        context: grpc.aio.ServicerContext,
        fn: Callable[[Conn, uuid.UUID], Awaitable[T]],
        *,
        write: bool,
    ) -> T:
        user_id = self._caller(context)
        acting = self._acting(context, user_id)

        async def body(conn: Conn) -> T:
            if acting is not None:
                why = await accounts.check_token(conn, acting)
                if why:
                    raise Unauthenticated(
                        f"credentials revoked ({why}): log in again (tessera login)"
                    )
            return await fn(conn, user_id)

        if not write:
            return await self.db.run(body)
        lock = self._write_locks.get(user_id)
        if lock is None:
            lock = self._write_locks[user_id] = asyncio.Lock()
        async with lock:
            return await self.db.run(body)

    async def _require_admin(self, context: grpc.aio.ServicerContext, what: str) -> None:
        """Admins (with a token that was not revoked) and nodes only."""
        principal = current_principal()
        if principal.is_node:
            return

        async def check(conn: Conn, uid: uuid.UUID) -> None:
            return None

        await self._txn(context, check)  # a revoked token is UNAUTHENTICATED, admin or not
        if not principal.is_admin:
            raise PermissionDenied(f"only an admin can {what}")

    @staticmethod
    async def _resolve(
        conn: Conn, user_id: uuid.UUID, ns: str, path: str, *, into_mount: bool
    ) -> Target:
        """Where a request's (namespace_id, path) lands; see ``sharing.resolve``."""
        return await resolve(conn, user_id, opt_uuid(ns, "namespace"), path, into_mount=into_mount)

    def _notify(
        self, changes: Iterable[tuple[uuid.UUID, int]], *, membership: bool = False
    ) -> None:
        """Tell the sync nodes about the newest seq of each changed namespace; ``membership``
        (share, unshare) also makes them re-list the affected users' namespaces at once."""
        newest: dict[uuid.UUID, int] = {}
        for ns, seq in changes:
            newest[ns] = max(seq, newest.get(ns, 0))
        for ns, seq in newest.items():
            self.notifier.changed(ns, 0 if membership else seq)
