"""``tessera put`` / ``get`` as a user runs them: folders both ways, ``-`` for standard
input/output, no silent overwrite, progress bars, and an interrupted put that resumes without
sending any chunk twice (counted on the block nodes)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.helpers import new_user, random_file, run_cli, same_bytes

if TYPE_CHECKING:
    from devcluster import LocalCluster

pytestmark = pytest.mark.cluster


def _env(cluster: LocalCluster, home: Path, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "TESSERA_ENDPOINT": cluster.meta_address,
        "TESSERA_TOKEN": token,
    }


def _cli(
    cluster: LocalCluster, home: Path, token: str, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        input=stdin,
        capture_output=True,
        env=_env(cluster, home, token),
        timeout=120,
    )


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def _one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 1, result.stdout
    err = result.stderr.decode()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tessera: ") and "Traceback" not in err, err
    return lines[0]


async def test_put_and_get_folders_recursively(cluster: LocalCluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token, prefix="tree")
    tree = tmp_path / "photos"
    (tree / "2024" / "summer").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "notes.txt").write_text("hello\n")
    (tree / "2024" / "a.txt").write_text("a\n")
    random_file(tree / "2024" / "summer" / "big.bin", 5 * 1024 * 1024)
    (tree / "link").symlink_to(tree / "notes.txt")

    put = _cli(cluster, tmp_path, token, "put", str(tree), "backup/", "--progress")
    out = _ok(put)
    assert "3 files" in out
    assert "skipped" in put.stderr.decode() and "link" in put.stderr.decode()
    assert "big.bin" in put.stderr.decode()  # the progress bar (over 4 MiB), on stderr
    listing = _ok(_cli(cluster, tmp_path, token, "ls", "backup/photos"))
    assert {"2024/", "empty/", "notes.txt"} <= {line.split()[-1] for line in listing.splitlines()}

    dest = tmp_path / "restored"
    _ok(_cli(cluster, tmp_path, token, "get", "backup/photos", str(dest)))
    for rel in ("notes.txt", "2024/a.txt", "2024/summer/big.bin"):
        assert same_bytes(tree / rel, dest / rel), rel
    assert not (dest / "link").exists()

    # Into an existing folder: lands under its own name.
    into = tmp_path / "into"
    into.mkdir()
    _ok(_cli(cluster, tmp_path, token, "get", "backup/photos/2024", str(into)))
    assert (into / "2024" / "a.txt").read_text() == "a\n"


async def test_get_refuses_to_overwrite_without_force(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token, prefix="force")
    src = tmp_path / "src.txt"
    src.write_text("from the cluster\n")
    _ok(_cli(cluster, tmp_path, token, "put", str(src), "f.txt"))
    mine = tmp_path / "mine.txt"
    mine.write_text("my own work\n")
    line = _one_line_error(_cli(cluster, tmp_path, token, "get", "f.txt", str(mine)))
    assert "exists" in line and "--force" in line
    assert mine.read_text() == "my own work\n"  # untouched
    _ok(_cli(cluster, tmp_path, token, "get", "f.txt", str(mine), "--force"))
    assert mine.read_text() == "from the cluster\n"

    # A folder download stops before writing anything when any file would be overwritten.
    _ok(_cli(cluster, tmp_path, token, "put", str(src), "dir/one.txt"))
    _ok(_cli(cluster, tmp_path, token, "put", str(src), "dir/two.txt"))
    local = tmp_path / "dir"
    local.mkdir()
    (local / "two.txt").write_text("keep\n")
    line = _one_line_error(_cli(cluster, tmp_path, token, "get", "dir", str(tmp_path)))
    assert "two.txt exists" in line
    assert not (local / "one.txt").exists() and (local / "two.txt").read_text() == "keep\n"


async def test_dash_means_stdin_and_stdout(cluster: LocalCluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token, prefix="dash")
    payload = os.urandom(300_000)
    _ok(_cli(cluster, tmp_path, token, "put", "-", "piped.bin", stdin=payload))
    got = _cli(cluster, tmp_path, token, "get", "piped.bin", "-")
    assert got.returncode == 0, got.stderr
    assert got.stdout == payload
    assert not (Path.cwd() / "-").exists()
    line = _one_line_error(_cli(cluster, tmp_path, token, "put", "-", "folder/", stdin=b"x"))
    assert "standard input" in line


def _client_puts(cluster: LocalCluster) -> float:
    """Chunks the block nodes stored from clients (not replicas), summed over the nodes."""
    total = 0.0
    for node in cluster.nodes("block"):
        with urllib.request.urlopen(f"http://{node['metrics']}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('tessera_block_chunk_puts_total{source="client"}'):
                    total += float(line.split()[1])
    return total


def test_interrupted_put_resumes_without_sending_a_chunk_twice(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    _, token = asyncio.run(new_user(cluster.meta_address, cluster.admin_token, prefix="resume"))
    big = random_file(tmp_path / "big.bin", 96 * 1024 * 1024)
    journals = tmp_path / "cache" / "tessera" / "uploads"
    before = _client_puts(cluster)

    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "put", str(big), "big.bin"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(cluster, tmp_path, token),
    )
    deadline = time.monotonic() + 60
    while not any(j.stat().st_size for j in journals.glob("*.receipts")):  # a batch is stored
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no chunk was stored in 60 s"
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: stops after the chunks in flight
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "run the same command again" in err.decode()
    (journal,) = journals.glob("*.receipts")
    stored_first = len(journal.read_text().splitlines())
    sent_first = _client_puts(cluster) - before
    assert sent_first == stored_first  # every chunk the cluster stored has its receipt kept
    listing = _cli(cluster, tmp_path, token, "ls")
    assert "big.bin" not in listing.stdout.decode()  # nothing was committed

    resumed = _ok(_cli(cluster, tmp_path, token, "put", str(big), "big.bin"))
    sent_total = _client_puts(cluster) - before
    chunks_sent, chunks = (int(x) for x in resumed.split("(")[1].split()[0].split("/"))
    assert 0 < stored_first < chunks, "the first run was interrupted partway"
    assert f"resumed: {stored_first} chunks already stored" in resumed
    assert chunks_sent == chunks - stored_first
    assert sent_total == chunks  # no chunk went to the cluster twice
    assert not journal.exists()  # committed: the journal is gone

    back = tmp_path / "back.bin"
    _ok(_cli(cluster, tmp_path, token, "get", "big.bin", str(back)))
    assert same_bytes(big, back)


async def test_cli_mistakes_are_one_line(cluster: LocalCluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token, prefix="oops")
    f = tmp_path / "f.txt"
    f.write_text("x")
    _ok(_cli(cluster, tmp_path, token, "put", str(f), "d/f.txt"))
    cases = [
        (("put", str(tmp_path / "missing"), "x"), "no such file"),
        (("get", "d", "-"), "standard output"),
        (("get", "d", str(f)), "is a file"),
        (("get", "d", str(tmp_path / "o"), "--revision", "abc"), "--revision"),
        (("get", "nothing-here.txt", str(tmp_path / "o")), "no such file"),
    ]
    for args, needle in cases:
        assert needle in _one_line_error(_cli(cluster, tmp_path, token, *args)), args
    assert (
        run_cli(cluster.meta_address, "put", "--help", token=token, home=tmp_path).returncode == 0
    )
