"""What a device has seen of a folder: its cursor, less remote changes not on its disk yet."""

from __future__ import annotations

from pathlib import Path

from syncd.localdb import FILE, FOLDER, LocalDB, RemoteRow, SyncedRow


def test_oldest_unapplied_inside_a_folder(tmp_path: Path) -> None:
    db = LocalDB(tmp_path / "state.sqlite3")
    ns = "ns"
    db.put_remote(RemoteRow(ns, "d", "Sub", FOLDER, "r1", 0, b"", False, 1))
    db.put_synced(SyncedRow("Sub", ns, "d", FOLDER, "r1", 0, b""))
    db.put_remote(RemoteRow(ns, "a", "Sub/a.txt", FILE, "r2", 1, b"h", False, 2))
    db.put_synced(SyncedRow("Sub/a.txt", ns, "a", FILE, "r2", 1, b"h"))
    assert db.oldest_unapplied(ns, "sub") is None  # everything on disk (keys ignore case)

    db.put_remote(RemoteRow(ns, "b", "Sub/deep/b.txt", FILE, "r5", 1, b"h", False, 5))
    db.put_remote(RemoteRow(ns, "a", "Sub/a.txt", FILE, "r7", 1, b"h2", False, 7))
    db.put_remote(RemoteRow(ns, "o", "Other/c.txt", FILE, "r3", 1, b"h", False, 3))
    db.put_remote(RemoteRow(ns, "g", "Sub/gone.txt", FILE, "r4", 0, b"", True, 4))
    db.put_remote(RemoteRow("other-ns", "z", "Sub/z.txt", FILE, "r1", 1, b"h", False, 1))
    assert db.oldest_unapplied(ns, "Sub") == 5  # not other folders, namespaces, or deletes
    db.put_synced(SyncedRow("Sub/deep/b.txt", ns, "b", FILE, "r5", 1, b"h"))
    assert db.oldest_unapplied(ns, "Sub") == 7  # an edit not downloaded yet counts too
    db.close()
