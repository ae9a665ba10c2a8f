"""Point-in-time restore of files and folders, and the trash (``metanode.timetravel``)."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import grpc

from metanode import idempotency, timetravel
from metanode.db import Conn
from metanode.idempotency import entry_from_json, entry_to_json
from metanode.model import EntryRow
from metanode.rpcbase import Handlers, entry_pb, opt_uuid, parse_path
from metanode.sharing import Target
from tessera.errors import FailedPrecondition, InvalidArgument
from tessera.paths import join_path
from tessera.pb import meta_pb2


def shown_path(target: Target, request_ns: str, path: str) -> str:
    """A namespace path as the caller named it: inside their mount of a shared folder when the
    request went through their root."""
    if request_ns or target.in_root:
        return path
    for m in target.mounts:
        if m.ns_id == target.ns_id:
            return join_path(m.path, path) if path else m.path
    return path


class RestoreRpcs(Handlers):
    """Mixin of MetadataService: RestoreTree and ListTrash."""

    def _retention(self) -> int:
        """Seconds old revisions are kept (0 when this metanode runs no collector)."""
        return self.collector.revision_retention if self.collector is not None else 0

    async def RestoreTree(
        self, request: meta_pb2.RestoreTreeRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RestoreTreeResponse:
        path = parse_path(request.path)
        file_id = opt_uuid(request.file_id, "file")
        if request.at_us < 0:
            raise InvalidArgument("at_us is a time: microseconds since the epoch")
        keep = self._retention()
        if request.at_us and keep and request.at_us < (time.time() - keep) * 1_000_000:
            oldest = dt.datetime.fromtimestamp(time.time() - keep, tz=dt.UTC)
            raise FailedPrecondition(
                f"revisions are kept for {keep // 86400 or 1} day(s): pick a time after "
                f"{oldest.isoformat(timespec='seconds')}"
            )

        async def body(conn: Conn, uid: uuid.UUID) -> tuple[EntryRow, int, list[EntryRow], bool]:
            op, dev = request.operation_id, request.device_id
            prior = await idempotency.recall(conn, uid, dev, op, "restore_tree")
            if prior is not None:
                return entry_from_json(prior["entry"]), int(prior["changed"]), [], False
            t = await self._resolve(conn, uid, request.namespace_id, path, into_mount=False)
            row, stored = await timetravel.find(conn, t.ns_id, t.path, file_id)
            if request.at_us:
                at = timetravel.from_us(request.at_us)
            elif row.deleted:
                at = await timetravel.deleted_at(conn, t.ns_id, row) - timetravel.JUST_BEFORE
            else:
                raise FailedPrecondition(
                    f"{path} is not deleted: name a time (--at) or a revision to restore"
                )
            head, written = await timetravel.restore_at(
                conn, uid, t.ns_id, row, stored, at, request.device_id
            )
            outcome = {"entry": entry_to_json(head), "changed": len(written)}
            await idempotency.remember(conn, uid, dev, op, "restore_tree", outcome)
            return head, len(written), written, True

        head, changed, written, fresh = await self._write_txn(context, body)
        if fresh and written:
            self._notify([(e.ns_id, e.seq) for e in written])
        return meta_pb2.RestoreTreeResponse(
            entry=entry_pb(head), changed=changed, changes=[entry_pb(e) for e in written]
        )

    async def ListTrash(
        self, request: meta_pb2.ListTrashRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListTrashResponse:
        path = parse_path(request.path, allow_root=True)

        async def body(conn: Conn, uid: uuid.UUID) -> tuple[Target, list[timetravel.TrashRow]]:
            t = await self._resolve(conn, uid, request.namespace_id, path, into_mount=True)
            return t, await timetravel.trash(conn, uid, t.ns_id, t.path, request.limit)

        target, rows = await self._txn(context, body)
        keep = self._retention()
        out = []
        for r in rows:
            e = entry_pb(r.entry)
            e.path = shown_path(target, request.namespace_id, r.entry.path)
            e.name = e.path.rpartition("/")[2]
            until = r.entry.modified_at_us + keep * 1_000_000 if keep else 0
            out.append(
                meta_pb2.TrashEntry(
                    entry=e,
                    deleted_by=r.deleted_by,
                    restorable_until_us=until,
                    files_inside=r.files_inside,
                )
            )
        return meta_pb2.ListTrashResponse(entries=out, retention_seconds=keep)
