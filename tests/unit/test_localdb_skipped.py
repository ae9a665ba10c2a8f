"""LocalDB's skipped paths: recorded once per reason, case-insensitive keys, pruned, forgotten."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from client._localdb import LocalDB, key_of


def test_skipped_paths(tmp_path: Path) -> None:
    db = LocalDB(tmp_path / "state.sqlite3")
    try:
        assert db.skipped() == []
        assert db.skip("team/docs/new.txt", "team/docs is a symlink", "r1") is True
        assert (
            db.skip("team/docs/new.txt", "team/docs is a symlink", "r1", retry_at=5.0) is False
        )  # no news: no log
        assert (
            db.skip("Team/Docs/New.txt", "team/docs is a file here, not a folder", "r1") is True
        )  # same key, new reason
        rows = db.skipped()
        assert [(s.path, s.reason, s.revision) for s in rows] == [
            ("Team/Docs/New.txt", "team/docs is a file here, not a folder", "r1")
        ]
        assert db.skipped_row("team/docs/new.txt") == rows[0]
        db.skip("long/name.txt", "too long", "r2", retry_at=123.0)
        assert db.skipped_row("long/name.txt").retry_at == 123.0  # type: ignore[union-attr]
        db.prune_skipped({key_of("long/name.txt")})
        assert [s.path for s in db.skipped()] == ["long/name.txt"]
        db.unskip("LONG/name.txt")
        assert db.skipped() == []
    finally:
        db.close()

    with sqlite3.connect(
        tmp_path / "state.sqlite3"
    ) as old:  # a state database from before the table
        old.execute("DROP TABLE skipped")
    again = LocalDB(tmp_path / "state.sqlite3")
    try:
        assert again.skipped() == []
    finally:
        again.close()
