"""The sync engine's decisions, as pure functions (Dropbox Nucleus style).

The planner takes the three trees as data: the remote tree (what the server has, as far as the
journal was read), the local tree (what is on disk, as the indexer saw it) and the synced tree
(the merge base: what both sides last agreed on), plus pending state (queued local ops,
unindexed changes, paths held back after a failure, ignore results). It returns what to do.
No I/O, no clock, no randomness: the same input always gives the same plan.

Executors do the I/O and report back: ``apply.Applier`` for remote changes coming down (it
gathers the facts below for each step through ``SafeFS``, asks ``decide_*``, and carries out
the answer), ``ops.OpRunner`` for local changes going up. Who wins a conflict, and what the
loser is called, is in ``conflicts``.

Remote steps (``remote_steps``) are ordered so each can run on its own: moves shallowest first
(a moved folder takes its children along), then folders shallowest first, then files, then
deletes deepest first (a folder is removed after what is in it).
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from syncd.localdb import FILE, FOLDER, RemoteRow, SyncedRow, key_of


class Kind(enum.Enum):
    MOVE = "move"
    FOLDER = "folder"
    FILE = "file"
    DELETE = "delete"


@dataclass(frozen=True)
class Step:
    """One remote difference to bring to the disk: ``rel`` is the local path it lands at."""

    kind: Kind
    remote: RemoteRow
    synced: SyncedRow | None
    rel: str


def case_renamed(local: str, remote: str) -> str | None:
    """``local`` with the last name spelled as in ``remote`` when the two differ only in the
    case of that name (the server renamed it); None otherwise, also for a mere NFC/NFD
    difference, which the server cannot tell apart."""
    folder, _, name = local.rpartition("/")
    new = remote.rpartition("/")[2]
    if unicodedata.normalize("NFC", name) == unicodedata.normalize("NFC", new):
        return None
    return f"{folder}/{new}" if folder else new


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def local_spelling(rel: str, spelled: Callable[[str], str | None]) -> str:
    """``rel`` (the server's spelling, NFC) with each leading part spelled as on this disk when
    the two differ only in Unicode form: the server stores NFC and cannot tell them apart,
    and a case-sensitive disk must not get an NFC twin of an NFD folder. ``spelled``: key ->
    local path of an entry this device knows (synced or indexed), or None."""
    parts = rel.split("/")
    out: list[str] = []
    for i, name in enumerate(parts):
        here = spelled(key_of("/".join(parts[: i + 1])))
        mine = here.rpartition("/")[2] if here is not None else name
        out.append(mine if mine != name and nfc(mine) == nfc(name) else name)
    return "/".join(out)


def remote_steps(
    diff: Iterable[tuple[RemoteRow, SyncedRow | None, str | None]],
    spelled: Callable[[str], str | None] | None = None,
) -> list[Step]:
    """Classify and order remote differences: (remote row, synced row, local path or None when
    the namespace is not mounted here). A deleted row nobody synced needs nothing. With
    ``spelled`` (see ``local_spelling``), paths keep this disk's Unicode form."""
    moves: list[Step] = []
    folders: list[Step] = []
    files: list[Step] = []
    deletes: list[Step] = []
    for r, s, rel in diff:
        if rel is None:
            continue
        if spelled:
            rel = local_spelling(rel, spelled)
        if r.deleted:
            if s is not None:
                deletes.append(Step(Kind.DELETE, r, s, s.path))
        elif s is not None and key_of(s.path) != key_of(rel):
            moves.append(Step(Kind.MOVE, r, s, rel))
        elif s is not None and (renamed := case_renamed(s.path, rel)) is not None:
            moves.append(Step(Kind.MOVE, r, s, renamed))  # a case-only rename: the same place
        elif r.kind == FOLDER:
            folders.append(Step(Kind.FOLDER, r, s, rel))
        else:
            files.append(Step(Kind.FILE, r, s, rel))
    moves.sort(key=lambda m: m.rel.count("/"))
    folders.sort(key=lambda f: f.rel.count("/"))
    deletes.sort(key=lambda d: -d.rel.count("/"))
    return moves + folders + files + deletes


def agreed_revision(local: str, remote: str, revision: str) -> str:
    """The revision to record as synced after the server accepted a local change at ``local``
    and answered with an entry at ``remote``: if the server put it elsewhere (the folder it was
    made in moved meanwhile) or spells a name otherwise (it kept the case of a name it already
    had), no revision, so that the difference stays and ``remote_steps`` moves the local entry
    to the server's place and spelling."""
    mine, theirs = nfc(local), nfc(remote)
    if mine != theirs and not mine.endswith("/" + theirs):  # (a mount's path is a suffix)
        return ""
    return revision


def parent_revision(s: SyncedRow | None, r: RemoteRow | None) -> str:
    """The parent revision of a local edit's commit: the merge base's revision; when that was
    left empty to force a rename (``agreed_revision``), the remote row's revision if it still
    has the merge base's bytes (else "": a newer version this device has not seen must make
    the commit a conflict, never be overwritten)."""
    if s is None or s.kind != FILE:
        return ""
    if s.revision:
        return s.revision
    if (
        r is not None
        and not r.deleted
        and r.file_id == s.file_id
        and r.content_hash == s.content_hash
    ):
        return r.revision
    return ""


def move_settles(r: RemoteRow, s: SyncedRow) -> bool:
    """After renaming the local entry for a remote move, is the remote row fully on disk? Only
    for a folder, or a file whose bytes and executable bit did not change too (else the
    rename keeps the old merge base, and the new version or chmod still comes down)."""
    return r.kind == FOLDER or (
        r.content_hash == s.content_hash and bool(r.executable) == bool(s.executable)
    )


class Act(enum.Enum):
    """What an executor does for one step."""

    WAIT = "wait"  # a local change decides first (its op runs, or the indexer sees it)
    MARK_DIRTY = "mark dirty"  # a local change the indexer has not seen yet: index it first
    FORGET = "forget"  # drop the synced row(s): nothing on disk to change
    RENAME = "rename"  # move the local entry to the remote's place
    DROP_DUPLICATE = "remove a stale copy of a file that is synced elsewhere with the same bytes"
    MERGE = "merge"  # a folder moved onto one made here meanwhile: remove the old one once empty
    CREATE = "create"  # make the folder
    RECORD = "record"  # the disk already matches: record it as synced
    ADOPT = "adopt"  # the disk already matches but was not indexed: index and record it
    SKIP_SYMLINK = "skip: symlink"  # a symlink where the server has a folder: never written through
    SKIP_KIND = "skip: other kind"  # a file here, a folder there (or the reverse): both left
    LEAVE = "leave"  # something unindexed (ignored) is there: leave it
    HELD = "held"  # failed after a download: not again before a rescan
    COPY_THEN_DOWNLOAD = "keep a conflicted copy, then download"
    COPY_TWIN = "keep the local twin (another spelling) as a conflicted copy"
    CHMOD = "chmod"  # same bytes, another executable bit
    DOWNLOAD = "download"
    KEEP_EDIT = "keep the local edit"  # edited here: the edit beats the remote delete
    UNLINK = "unlink"
    RMDIR = "rmdir"


@dataclass(frozen=True)
class Here:
    """The local side of one path, as data.

    ``disk``: FILE, FOLDER or None (absent, or not indexable: a symlink, ignored, hidden);
    ``indexed``: the local tree has a row; ``clean``: disk and that row agree (size, mtime,
    inode, kind); ``pending``: a queued op at the path; ``ignored``: ``.tesseraignore`` covers it;
    ``twin``: an indexed entry on disk at the same key but spelled otherwise (the disk is
    case-sensitive: it is not at this path, and the server cannot hold both).
    """

    disk: int | None = None
    indexed: bool = False
    clean: bool = True
    pending: bool = False
    ignored: bool = False
    twin: bool = False  # the local tree has this key spelled otherwise (case, Unicode form)


def decide_move(
    old: Here,
    new: Here,
    *,
    folder: bool,
    pending_inside: bool,
    same_key: bool,
    duplicate: bool = False,
) -> Act:
    """A remote move of the synced entry at ``old`` to ``new``. ``duplicate``: ``new`` is already
    synced as this very file at this revision, with the same bytes as ``old`` (a move that
    failed here was uploaded again and met the moved original): ``old`` is a stale copy."""
    if new.pending:
        return Act.WAIT
    if not old.clean or old.pending:
        if old.pending or not old.ignored:
            return Act.WAIT  # the local change's op decides
        return Act.FORGET  # an ignored local edit stays as it is; the moved version downloads
    if folder and pending_inside:
        return Act.WAIT  # local changes inside go out first
    if new.twin and not same_key:
        return Act.SKIP_KIND if new.indexed else Act.WAIT  # another spelling of it is there
    if new.disk is not None and not same_key:
        if duplicate and old.disk == FILE:
            return Act.DROP_DUPLICATE
        if folder and new.disk == FOLDER and old.disk == FOLDER:
            return Act.MERGE  # a folder is there already: the children's own moves merge them
        if new.indexed and new.clean:
            return Act.SKIP_KIND  # a settled local entry is in the way: a clash, reported
        return Act.WAIT  # something local is in the way, not settled yet: later
    if old.disk is None:
        return Act.FORGET  # nothing to move: the download brings it
    return Act.RENAME


def decide_folder(here: Here, *, link: bool | None, synced_here: bool = False) -> Act:
    """A remote folder. ``link``: only asked when nothing indexable is there and nothing was
    indexed: True for a symlink, False for something else (ignored), None for nothing at all.
    ``synced_here``: the synced tree has an entry at this path."""
    if here.pending:
        return Act.WAIT
    if here.twin:
        return Act.WAIT if synced_here else Act.COPY_TWIN  # conflicts.Loser.TWIN
    if here.disk is None:
        if here.indexed:
            return Act.MARK_DIRTY  # deleted locally, not indexed yet
        if link is None:
            return Act.CREATE
        return Act.SKIP_SYMLINK if link else Act.LEAVE
    if here.disk != FOLDER:
        return Act.SKIP_KIND  # a clash is reported and skipped: both are left as they are
    return Act.RECORD if here.indexed else Act.ADOPT


def decide_file(
    here: Here,
    r: RemoteRow,
    s: SyncedRow | None,
    *,
    held: bool,
    executable_here: bool | None,
) -> Act:
    """A remote file version. ``s``: the synced row at this path; ``held``: this revision failed
    after a download and waits for a rescan; ``executable_here``: the disk's executable bit."""
    if here.pending:
        return Act.WAIT
    if here.twin:
        return Act.WAIT if s is not None else Act.COPY_TWIN  # conflicts.Loser.TWIN
    edited = not here.clean
    if edited and not (here.disk == FILE and here.ignored):
        return Act.MARK_DIRTY
    if here.disk is not None and here.disk != FILE:
        return Act.SKIP_KIND  # a clash is reported and skipped: both are left as they are
    if held:
        return Act.HELD
    if here.disk is not None and (s is None or edited):
        return Act.COPY_THEN_DOWNLOAD  # conflicts.Loser.UNTRACKED / IGNORED_EDIT
    if (
        here.disk is not None
        and s is not None
        and s.kind == FILE
        and s.content_hash == r.content_hash
    ):
        return Act.CHMOD if bool(r.executable) != bool(executable_here) else Act.RECORD
    return Act.DOWNLOAD


def decide_delete(here: Here) -> Act:
    """A remote delete of the synced entry here (its folder: deepest first)."""
    if here.pending:
        return Act.WAIT
    if here.disk is None:
        return Act.FORGET
    if not here.clean:
        return Act.KEEP_EDIT  # conflicts.edit_beats_delete
    return Act.UNLINK if here.disk == FILE else Act.RMDIR
