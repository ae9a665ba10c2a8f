"""The sync cycle of a model device: index, run ops, read the journal, apply remote steps.

``index`` and ``run_ops`` model the indexer and the op runner; ``reconcile`` carries out what
the real planner decides for each remote step (see ``sim_model``).
"""

from __future__ import annotations

from dataclasses import replace

from sim_model import LINK, NS, Conflict, DEnt, Device, Op, Refused, inside, parent

from syncd.localdb import FILE, FOLDER, SyncedRow, key_of, rebase
from syncd.planner import (
    Act,
    Kind,
    agreed_revision,
    decide_delete,
    decide_file,
    decide_folder,
    decide_move,
    move_settles,
    parent_revision,
    remote_steps,
)


def synced_row(path: str, r) -> SyncedRow:  # noqa: ANN001 - a RemoteRow
    """The merge base after an op: the server's spelling of the name wins
    (``planner.agreed_revision``: a forced difference the planner turns into a rename)."""
    rev = agreed_revision(path, r.path, r.revision)
    return SyncedRow(path, NS, r.file_id, r.kind, rev, r.size, r.content_hash, r.executable)


# -- indexer ------------------------------------------------------------------------------
def index(d: Device) -> int:
    """Queue what changed on disk since the last index (``Indexer.detect``)."""
    disk = {
        k: e
        for k, e in d.disk.items()
        if e.kind != LINK and not d.hidden(e.path) and not d.is_ignored(e.path)
    }
    known = {k: e for k, e in d.index.items() if not d.is_ignored(e.path)}
    n = 0
    for k in sorted(disk.keys() & known.keys(), key=lambda k: k.count("/")):  # case/NFC renames
        e, i = disk[k], known[k]
        if e.path != i.path and e.kind == i.kind:  # as `Indexer._renames`: by key, any inode
            d.ops.append(Op("move", i.path, e.path))
            for kk in [kk for kk in d.index if kk == k or kk.startswith(k + "/")]:
                v = d.index[kk]
                d.index[kk] = replace(v, path=rebase(v.path, i.path, e.path))
            known = {k: e for k, e in d.index.items() if not d.is_ignored(e.path)}
            n += 1
    gone = {k: i for k, i in known.items() if k not in disk or disk[k].kind != i.kind}
    new = {k: e for k, e in disk.items() if k not in known or known[k].kind != e.kind}
    for k in sorted(new, key=lambda k: (new[k].kind != FOLDER, k.count("/"))):  # moves by inode
        if k not in new:
            continue
        e = new[k]
        g = next((g for g, i in gone.items() if i.inode == e.inode and i.kind == e.kind), None)
        if g is None:
            continue
        old = gone.pop(g)
        d.ops.append(Op("move", old.path, e.path))
        for kk in [kk for kk in list(d.index) if kk == g or kk.startswith(g + "/")]:
            v = d.index.pop(kk)
            moved = rebase(v.path, old.path, e.path)
            d.index[key_of(moved)] = replace(v, path=moved)
            gone.pop(kk, None)
            new.pop(key_of(moved), None)
        new.pop(k, None)
        n += 1
    for k in sorted((k for k in gone if k in disk), key=lambda k: -k.count("/")):
        d.index.pop(k, None)  # a file replaced by a folder (or the reverse): the delete goes first
        d.ops.append(Op("delete", gone.pop(k).path))
        n += 1
    for k in sorted(new, key=lambda k: k.count("/")):
        e = new[k]
        d.index[k] = replace(e)
        d.ops.append(Op("mkdir" if e.kind == FOLDER else "upload", e.path))
        n += 1
    for k, e in disk.items():
        i = d.index.get(k)
        if k in new or i is None or (i.content, i.exe, i.inode) == (e.content, e.exe, e.inode):
            continue
        d.index[k] = replace(e)
        if e.kind == FILE:
            d.ops.append(Op("upload", e.path))
            n += 1
    for k in [k for k, i in d.index.items() if d.is_ignored(i.path) and k not in d.disk]:
        del d.index[k]  # ignored and gone: never a delete
    for k in sorted(gone, key=lambda k: -k.count("/")):
        d.index.pop(k, None)
        d.ops.append(Op("delete", gone[k].path))
        n += 1
    return n


# -- op runner ----------------------------------------------------------------------------
def _folder_id(d: Device, path: str) -> str:
    s = d.synced.get(key_of(parent(path))) if parent(path) else None
    return s.file_id if s is not None and s.kind == FOLDER else ""


def _seen(d: Device, path: str) -> int:
    """The cursor, less any remote row inside not applied on this disk yet (``OpRunner._seen``)."""
    by_id = {s.file_id: s for s in d.synced.values()}
    waiting = [
        r.seq
        for r in d.remote.values()
        if not r.deleted
        and inside(r.path, path)
        and (r.file_id not in by_id or by_id[r.file_id].revision != r.revision)
    ]
    return min(d.cursor, min(waiting) - 1) if waiting else d.cursor


def _reupload(d: Device, new: str) -> None:
    for k in sorted(
        (k for k in d.index if k == key_of(new) or k.startswith(key_of(new) + "/")),
        key=lambda k: k.count("/"),
    ):
        i = d.index[k]
        d.ops.append(Op("mkdir" if i.kind == FOLDER else "upload", i.path))


def run_op(d: Device, op: Op) -> bool:
    """One op; False to keep it queued (retried next cycle)."""
    srv, k = d.server, key_of(op.path)
    if op.kind == "upload":
        e = d.disk.get(k)
        if e is None or e.kind != FILE or d.hidden(op.path) or d.is_ignored(op.path):
            return True
        s = d.synced.get(k)
        if (
            s is not None
            and s.kind == FILE
            and s.content_hash == e.content.encode()
            and s.executable == e.exe
        ):
            return True
        try:
            r = srv.commit(
                op.path,
                parent_revision(s, d.remote.get(s.file_id) if s is not None else None),
                e.content,
                e.exe,
                _folder_id(d, op.path),
            )
        except Refused:
            return True
        except Conflict as c:
            if c.head is None:
                d.drop_synced(op.path)
                return False
            if c.head.kind == FILE and c.head.content == e.content:
                d.synced[k] = synced_row(op.path, c.head.row())
                d.remote[c.head.fid] = c.head.row()
                if c.head.exe != e.exe:
                    d.ops.append(Op("upload", op.path))
                return True
            copy = d.conflicted_copy(op.path)
            d.rename(op.path, copy, synced=False)
            d.ops.append(Op("upload", copy))
            return True
        d.remote[r.file_id] = r
        if key_of(r.path) == k:
            d.synced[k] = synced_row(op.path, r)
        return True
    if op.kind == "mkdir":
        e = d.disk.get(k)
        if e is None or e.kind != FOLDER or d.hidden(op.path) or d.is_ignored(op.path):
            return True
        try:
            r = srv.mkdir(op.path, _folder_id(d, op.path))
        except Refused:
            return True
        d.remote[r.file_id] = r
        if key_of(r.path) == k:
            d.synced[k] = synced_row(op.path, r)
        return True
    if op.kind == "delete":
        s = d.synced.get(k)
        now = d.disk.get(k)
        if s is None or (now is not None and now.kind == s.kind and not d.hidden(op.path)):
            return True  # back again (a file replaced by a folder, or the reverse, is a delete)
        if s.kind == FOLDER:
            for kk, row in d.synced.items():
                r = d.remote.get(row.file_id)
                if kk.startswith(k + "/") and r is not None and not r.deleted:
                    d.drop_synced(op.path)  # a child was changed elsewhere: keep the folder
                    return True
        try:
            r, _kept = srv.delete(s.path, s.revision if s.kind == FILE else "", _seen(d, s.path))
        except Conflict:
            d.drop_synced(op.path)
            return True
        except KeyError:
            d.drop_synced(op.path, subtree=True)
            return True
        d.drop_synced(op.path, subtree=s.kind == FOLDER)
        d.remote[r.file_id] = r
        return True
    if op.kind == "move":
        s = d.synced.get(k)
        if s is None:
            _reupload(d, op.dest)
            return True
        try:
            r = srv.move(s.path, op.dest, s.revision if s.kind == FILE else "")
        except (Refused, KeyError):
            d.drop_synced(op.path, subtree=True)
            _reupload(d, op.dest)
            return True
        old = s.path
        for kk in [kk for kk in d.synced if kk == k or kk.startswith(k + "/")]:
            v = d.synced.pop(kk)
            moved = rebase(v.path, old, op.dest)
            d.synced[key_of(moved)] = replace(v, path=moved)
        d.synced[key_of(op.dest)] = synced_row(op.dest, r)
        d.remote[r.file_id] = r
        return True
    return True


def run_ops(d: Device) -> int:
    ops, d.ops = d.ops, []
    done, keep = 0, []
    for op in ops:
        if run_op(d, op):
            done += 1
        else:
            keep.append(op)
    d.ops = keep + d.ops
    return done


def pull(d: Device) -> int:
    rows = d.server.journal[d.cursor :]
    for r in rows:
        d.remote[r.file_id] = r
    d.cursor = len(d.server.journal)
    return len(rows)


# -- the planner's executor ------------------------------------------------------------------
def reconcile(d: Device) -> int:
    """Carry out the real planner's decisions for every remote difference."""
    by_id: dict[str, list[SyncedRow]] = {}
    for row in d.synced.values():  # (two synced rows may name one file id: ``LocalDB.remote_diff``)
        by_id.setdefault(row.file_id, []).append(row)
    diff = []
    for r in sorted(d.remote.values(), key=lambda r: r.seq):
        rows = by_id.get(r.file_id, [])
        if not rows and not r.deleted:
            diff.append((r, None, r.path))
        diff += [(r, row, r.path) for row in rows if row.revision != r.revision]
    pending = d.pending()
    done = 0
    spelled = {k: e.path for k, e in d.index.items()} | {k: s.path for k, s in d.synced.items()}
    for st in remote_steps(diff, spelled.get):
        done += _step(d, st, pending)
    return done


def _step(d: Device, st, pending: set[str]) -> int:  # noqa: ANN001, C901 - a Step
    r, s, rel = st.remote, st.synced, st.rel
    if st.kind is Kind.MOVE:
        assert s is not None
        if key_of(s.path) not in d.synced or d.synced[key_of(s.path)].file_id != s.file_id:
            return 0  # moved along with its folder already
        old = s.path
        act = decide_move(
            d.here(old, pending),
            d.here(rel, pending),
            folder=r.kind == FOLDER,
            pending_inside=any(k.startswith(key_of(old) + "/") for k in pending),
            same_key=key_of(rel) == key_of(old),
            duplicate=(there := d.synced.get(key_of(rel))) is not None
            and there.file_id == r.file_id
            and there.revision == r.revision
            and r.kind == FILE
            and s.content_hash == r.content_hash,
        )
        if act is Act.SKIP_KIND:
            d.skipped |= {key_of(rel), key_of(old)}  # reported: both are left as they are
            return 0
        if act is Act.DROP_DUPLICATE:
            d.remove(old)
            d.drop_synced(old)
            return 1
        if act is Act.FORGET:
            d.drop_synced(old, subtree=True)
            return 1
        if act is Act.MERGE:
            if any(k.startswith(key_of(old) + "/") for k in d.disk):
                return 0  # the children's own moves come first
            d.remove(old)
            d.drop_synced(old, subtree=True)
            return 1
        if act is not Act.RENAME:
            return 0
        if not d.writable(rel) or not d.writable(old):
            d.skipped |= {key_of(rel), key_of(old)}  # reported: the old entry stays where it is
            return 0
        d.makedirs(parent(rel))
        d.rename(old, rel, synced=True)
        if move_settles(r, s):
            d.synced[key_of(rel)] = synced_row(rel, r)
        return 1
    here = d.here(rel, pending)
    if here.twin and st.kind in (Kind.FOLDER, Kind.FILE):
        act = (
            decide_folder(here, link=None, synced_here=key_of(rel) in d.synced)
            if st.kind is Kind.FOLDER
            else decide_file(here, r, d.synced.get(key_of(rel)), held=False, executable_here=None)
        )
        if act is Act.COPY_TWIN:
            twin = d.disk[key_of(rel)].path
            copy = d.conflicted_copy(twin)
            d.rename(twin, copy, synced=False)
            _reupload(d, copy)
            return 1
        return 0
    if st.kind is Kind.FOLDER:
        e = d.disk.get(key_of(rel))
        link = None
        if here.disk is None and not here.indexed and not here.pending:
            if d.hidden(rel):
                d.skipped.add(key_of(rel))
                return 0
            link = None if e is None else e.kind == LINK
        act = decide_folder(here, link=link, synced_here=key_of(rel) in d.synced)
        if act in (Act.WAIT, Act.LEAVE, Act.MARK_DIRTY):
            return 0
        if act in (Act.SKIP_SYMLINK, Act.SKIP_KIND):
            d.skipped.add(key_of(rel))
            return 0
        if act is Act.CREATE:
            if not d.writable(rel):
                d.skipped.add(key_of(rel))
                return 0
            d.makedirs(rel)
        elif act is Act.ADOPT:
            d.index[key_of(rel)] = replace(d.disk[key_of(rel)])
        d.synced[key_of(rel)] = synced_row(rel, r)
        return 1
    if st.kind is Kind.FILE:
        e = d.disk.get(key_of(rel))
        act = decide_file(
            here,
            r,
            d.synced.get(key_of(rel)),
            held=False,
            executable_here=e.exe if e is not None else None,
        )
        if act in (Act.WAIT, Act.MARK_DIRTY):
            return 0
        if act is Act.SKIP_KIND or not d.writable(rel):
            d.skipped.add(key_of(rel))
            return 0
        if act is Act.COPY_THEN_DOWNLOAD:
            copy = d.conflicted_copy(rel)
            d.rename(rel, copy, synced=False)
            if e is not None and e.kind == FOLDER:
                d.drop_synced(rel, subtree=True)
                _reupload(d, copy)
            else:
                d.ops.append(Op("upload", copy))
        elif act in (Act.CHMOD, Act.RECORD):
            if act is Act.CHMOD and e is not None:
                d.put(replace(e, exe=r.executable))
            d.synced[key_of(rel)] = synced_row(rel, r)
            return 1
        srv = d.server.by_id(r.file_id)
        if srv is None or srv.rev != r.revision:
            return 0  # moved or changed since: the journal says (NotFound / a newer head)
        old = d.disk.get(key_of(rel))
        d.makedirs(parent(rel))
        d.put(DEnt(rel, FILE, srv.content, srv.exe, old.inode if old is not None else 0))
        d.synced[key_of(rel)] = synced_row(rel, r)
        return 1
    assert s is not None
    rel = s.path
    act = decide_delete(d.here(rel, pending))
    if act is Act.WAIT:
        return 0
    if act is Act.FORGET:
        d.index.pop(key_of(rel), None)
        d.drop_synced(rel)
        return 1
    if act is Act.KEEP_EDIT:
        d.drop_synced(rel)
        return 1
    if act is Act.RMDIR and any(k.startswith(key_of(rel) + "/") for k in d.disk):
        d.drop_synced(rel)  # kept edits or ignored files inside: the folder goes back up
        d.ops.append(Op("mkdir", rel))
        return 1
    d.remove(rel)
    d.drop_synced(rel)
    return 1


def cycle(d: Device) -> int:
    """One pass of the daemon: index, ops, journal, remote steps."""
    if not d.online:
        return 0
    return index(d) + run_ops(d) + pull(d) + reconcile(d)
