"""The CLI's metadata commands end to end: rm, mv, history, restore, share, unshare, members."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.helpers import cli_fails, cli_ok, cluster_cli, new_user

pytestmark = pytest.mark.cluster


def _run(cluster, home: Path, token: str, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return cluster_cli(cluster, home, *args, token=token)


_ok, _fails = cli_ok, cli_fails


async def test_cli_metadata_commands(cluster, tmp_path: Path) -> None:
    na, ta = await new_user(cluster.meta_address, cluster.admin_token)
    nb, tb = await new_user(cluster.meta_address, cluster.admin_token)
    home = tmp_path / "home"
    src = tmp_path / "report.txt"
    src.write_text("version one\n")
    _ok(_run(cluster, home, ta, "put", str(src), "docs/report.txt"))
    src.write_text("version two\n")
    _ok(_run(cluster, home, ta, "put", str(src), "docs/report.txt"))

    history = _ok(_run(cluster, home, ta, "history", "docs/report.txt")).splitlines()
    assert len(history) == 2
    oldest = history[-1].split()[0]

    assert "deleted file docs/report.txt" in _ok(_run(cluster, home, ta, "rm", "docs/report.txt"))
    assert "deleted" in _ok(_run(cluster, home, ta, "history", "docs/report.txt")).splitlines()[0]
    assert "restored docs/report.txt" in _ok(
        _run(cluster, home, ta, "restore", "docs/report.txt", oldest)
    )
    out = tmp_path / "out.txt"
    _ok(_run(cluster, home, ta, "get", "docs/report.txt", str(out)))
    assert out.read_text() == "version one\n"

    _ok(_run(cluster, home, ta, "mv", "docs/report.txt", "docs/final.txt"))
    _ok(_run(cluster, home, ta, "put", str(src), "archive/keep.txt"))
    assert "docs/final.txt -> archive/final.txt" in _ok(
        _run(cluster, home, ta, "mv", "docs/final.txt", "archive")
    )
    assert "final.txt" in _ok(_run(cluster, home, ta, "ls", "archive"))

    assert f"shared archive with {nb} as viewer" in _ok(
        _run(cluster, home, ta, "share", "archive", nb, "--role", "viewer")
    )
    members = _ok(_run(cluster, home, ta, "members", "archive")).split()
    assert members == ["owner", na, "viewer", nb]
    assert "final.txt" in _ok(_run(cluster, home, tb, "ls", "archive"))
    assert "view-only" in _fails(_run(cluster, home, tb, "rm", "archive/final.txt"))
    _ok(_run(cluster, home, ta, "unshare", "archive", nb))
    assert "no such file or folder" in _fails(_run(cluster, home, tb, "ls", "archive"))

    # Mistakes are one line each, no traceback.
    assert "no such file or folder" in _fails(_run(cluster, home, ta, "rm", "nope.txt"))
    _fails(_run(cluster, home, ta, "mv", "archive", "../x"))
    _fails(_run(cluster, home, ta, "restore", "archive/final.txt", "not-a-revision"))
    _fails(_run(cluster, home, ta, "share", "archive/final.txt", nb))
    _fails(_run(cluster, home, ta, "share", "archive", "no-such-user-anywhere"))
    _fails(_run(cluster, home, ta, "mv", "archive", "archive/inner"))
