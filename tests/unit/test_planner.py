"""syncd/planner.py: the pure decisions, one rule per test (no I/O: trees and facts as data)."""

from __future__ import annotations

import unicodedata

from syncd.localdb import FILE, FOLDER, RemoteRow, SyncedRow, rebase
from syncd.planner import (
    Act,
    Here,
    Kind,
    agreed_revision,
    decide_delete,
    decide_file,
    decide_folder,
    decide_move,
    local_spelling,
    move_settles,
    remote_steps,
)

NFD_E = unicodedata.normalize("NFD", "é")


def remote(
    path: str,
    kind: int = FILE,
    rev: str = "r2",
    content: bytes = b"h",
    deleted: bool = False,
    fid: str = "f1",
    executable: bool = False,
) -> RemoteRow:
    return RemoteRow("ns", fid, path, kind, rev, 1, content, deleted, 2, executable)


def synced(
    path: str,
    kind: int = FILE,
    rev: str = "r1",
    content: bytes = b"h",
    fid: str = "f1",
    executable: bool = False,
) -> SyncedRow:
    return SyncedRow(path, "ns", fid, kind, rev, 1, content, executable)


CLEAN_FILE = Here(disk=FILE, indexed=True, clean=True)


def test_steps_are_ordered_moves_folders_files_deletes() -> None:
    diff = [
        (remote("x/gone", deleted=True, fid="f1"), synced("x/gone", fid="f1"), "x/gone"),
        (remote("x", deleted=True, kind=FOLDER, fid="f2"), synced("x", kind=FOLDER, fid="f2"), "x"),
        (remote("new.txt", fid="f3"), None, "new.txt"),
        (remote("a/b", kind=FOLDER, fid="f4"), None, "a/b"),
        (remote("a", kind=FOLDER, fid="f5"), None, "a"),
        (remote("c/moved", fid="f6"), synced("old", fid="f6"), "c/moved"),
        (remote("never", deleted=True, fid="f7"), None, "never"),  # nothing to do
        (remote("elsewhere", fid="f8"), None, None),  # not mounted here
    ]
    steps = remote_steps(diff)
    assert [(s.kind, s.rel) for s in steps] == [
        (Kind.MOVE, "c/moved"),
        (Kind.FOLDER, "a"),
        (Kind.FOLDER, "a/b"),
        (Kind.FILE, "new.txt"),
        (Kind.DELETE, "x/gone"),
        (Kind.DELETE, "x"),
    ]
    assert remote_steps(diff) == remote_steps(diff)


def test_case_only_rename_is_a_move_but_unicode_form_is_not() -> None:
    [step] = remote_steps([(remote("A.txt"), synced("a.txt"), "A.txt")])
    assert (step.kind, step.rel) == (Kind.MOVE, "A.txt")
    [step] = remote_steps(
        [(remote("é.txt"), synced(f"{NFD_E}.txt"), "é.txt")], {"é.txt": f"{NFD_E}.txt"}.get
    )
    assert (step.kind, step.rel) == (Kind.FILE, f"{NFD_E}.txt")  # this disk's form is kept


def test_local_spelling_keeps_nfd_parents_but_not_case() -> None:
    spelled = {"é": NFD_E, "d": "D"}
    assert local_spelling("é/x", spelled.get) == f"{NFD_E}/x"
    assert local_spelling("d/x", spelled.get) == "d/x"  # a case difference is the server's rename


def test_agreed_revision_forces_a_rename_to_the_servers_case() -> None:
    assert agreed_revision("a.txt", "a.txt", "r5") == "r5"
    assert agreed_revision("a.txt", "A.txt", "r5") == ""
    assert agreed_revision(f"{NFD_E}.txt", "é.txt", "r5") == "r5"


def test_move_settles_only_without_new_bytes_or_mode() -> None:
    assert move_settles(remote("b", content=b"h"), synced("a", content=b"h"))
    assert not move_settles(remote("b", content=b"i"), synced("a", content=b"h"))
    assert not move_settles(remote("b", executable=True), synced("a"))  # the chmod still comes
    assert move_settles(remote("b", kind=FOLDER, content=b"x"), synced("a", kind=FOLDER))


def test_move_decisions() -> None:
    absent = Here()
    kw = {"folder": False, "pending_inside": False, "same_key": False}
    assert decide_move(CLEAN_FILE, absent, **kw) is Act.RENAME
    assert decide_move(CLEAN_FILE, Here(pending=True), **kw) is Act.WAIT
    assert decide_move(Here(disk=FILE, indexed=True, clean=False), absent, **kw) is Act.WAIT
    ignored_edit = Here(disk=FILE, indexed=True, clean=False, ignored=True)
    assert decide_move(ignored_edit, absent, **kw) is Act.FORGET
    assert decide_move(CLEAN_FILE, CLEAN_FILE, **kw) is Act.SKIP_KIND  # a settled entry in the way
    assert decide_move(CLEAN_FILE, Here(disk=FILE, indexed=False, clean=False), **kw) is Act.WAIT
    dup = {"folder": False, "pending_inside": False, "same_key": False, "duplicate": True}
    assert decide_move(CLEAN_FILE, CLEAN_FILE, **dup) is Act.DROP_DUPLICATE
    both = {"folder": True, "pending_inside": False, "same_key": False}
    folder = Here(disk=FOLDER, indexed=True)
    assert decide_move(folder, folder, **both) is Act.MERGE
    assert (
        decide_move(CLEAN_FILE, CLEAN_FILE, folder=False, pending_inside=False, same_key=True)
        is Act.RENAME
    )
    assert decide_move(Here(indexed=False), absent, **kw) is Act.FORGET  # nothing to move
    folder = Here(disk=FOLDER, indexed=True)
    assert decide_move(folder, absent, folder=True, pending_inside=True, same_key=False) is Act.WAIT


def test_folder_decisions() -> None:
    assert decide_folder(Here(), link=None) is Act.CREATE
    assert decide_folder(Here(), link=True) is Act.SKIP_SYMLINK
    assert decide_folder(Here(), link=False) is Act.LEAVE
    assert decide_folder(Here(indexed=True, clean=False), link=None) is Act.MARK_DIRTY
    assert decide_folder(CLEAN_FILE, link=None) is Act.SKIP_KIND  # a clash: reported, both kept
    assert decide_folder(Here(disk=FOLDER, indexed=True), link=None) is Act.RECORD
    assert decide_folder(Here(disk=FOLDER, indexed=False, clean=False), link=None) is Act.ADOPT
    assert decide_folder(Here(pending=True), link=None) is Act.WAIT
    assert decide_folder(Here(twin=True), link=None) is Act.COPY_TWIN
    assert decide_folder(Here(twin=True), link=None, synced_here=True) is Act.WAIT


def test_file_decisions() -> None:
    r = remote("a", content=b"new")
    kw = {"held": False, "executable_here": False}
    assert decide_file(Here(), r, None, **kw) is Act.DOWNLOAD
    assert decide_file(CLEAN_FILE, r, synced("a", content=b"old"), **kw) is Act.DOWNLOAD
    assert decide_file(Here(pending=True), r, None, **kw) is Act.WAIT
    edited = Here(disk=FILE, indexed=True, clean=False)
    assert decide_file(edited, r, synced("a"), **kw) is Act.MARK_DIRTY
    ignored_edit = Here(disk=FILE, indexed=True, clean=False, ignored=True)
    assert decide_file(ignored_edit, r, synced("a"), **kw) is Act.COPY_THEN_DOWNLOAD
    assert decide_file(CLEAN_FILE, r, None, **kw) is Act.COPY_THEN_DOWNLOAD  # untracked local file
    assert decide_file(Here(disk=FOLDER, indexed=True), r, None, **kw) is Act.SKIP_KIND
    assert decide_file(Here(), r, None, held=True, executable_here=None) is Act.HELD
    same = synced("a", content=b"new")
    assert decide_file(CLEAN_FILE, r, same, **kw) is Act.RECORD
    assert (
        decide_file(CLEAN_FILE, remote("a", content=b"new", executable=True), same, **kw)
        is Act.CHMOD
    )
    assert decide_file(Here(twin=True), r, None, **kw) is Act.COPY_TWIN


def test_delete_decisions() -> None:
    assert decide_delete(Here()) is Act.FORGET
    assert decide_delete(CLEAN_FILE) is Act.UNLINK
    assert decide_delete(Here(disk=FOLDER, indexed=True)) is Act.RMDIR
    assert decide_delete(Here(disk=FILE, indexed=True, clean=False)) is Act.KEEP_EDIT
    assert decide_delete(Here(disk=FILE, pending=True)) is Act.WAIT


def test_rebase_counts_components_not_characters() -> None:
    assert rebase(f"{NFD_E}/a", "é", "É") == "É/a"  # "é" is one character shorter than NFD
    assert rebase("x/y/z", "x/y", "q") == "q/z"
    assert rebase("x", "x", "y") == "y"
