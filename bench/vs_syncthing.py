"""The same sync workloads on a Syncthing pair and a Tessera pair, interleaved, with ratios.

    .venv/bin/python bench/vs_syncthing.py [--rounds 2] [--big-mib 256] [--files 2000]
                                           [--tiny 20000] [--only big,small,delete,tiny]

Syncthing: the Debian ``syncthing`` package (``apt-get install syncthing``); without it the
script says so and exits 0. Two instances, each with its own home directory and a generated
``config.xml``: listen, GUI and device addresses on 127.0.0.1 only; global and local discovery,
relays, NAT traversal, usage reporting, crash reporting and upgrades off; the two devices
introduced by ID in each other's config; no filesystem watcher (the bench asks for a rescan
through the REST API as soon as the files are written).

Tessera: a local cluster (etcd, PostgreSQL, one metanode, one sync node, 3 block nodes, RF=3,
W=2, loopback) and two sync daemons of one user (``python -m cli sync``, separate processes,
watcher on, ``--settle 0.1``).

Each workload is timed from the moment its files are written on A (or deleted) to the moment
B's folder shows the final names at the final sizes (or none). Rounds run Tessera, Syncthing,
Tessera, ... so that both see the same machine. CPU seconds come from /proc for every process
of each side (nodes, PostgreSQL, etcd, daemons; the two syncthing processes).

``--tiny`` (20,000 files of 1 KiB in 200 folders) is off unless given: it takes minutes.
Not a test: numbers depend on the machine. The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the Tessera checkout that runs (see --root)

MiB = 1024 * 1024
CLK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes and their reaped children, from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / CLK


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (block nodes' store processes, etc.)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids: list[str] = []
        for task in Path(f"/proc/{p}/task").glob("*"):  # a child may be forked by any thread
            try:
                kids += (task / "children").read_text().split()
            except OSError:
                continue
        out.extend(int(k) for k in kids)
        todo.extend(int(k) for k in kids)
    return out


def stop_procs(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL what is still there after 20 s."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def wait_tree(folder: Path, want: dict[str, int], timeout: float) -> float:
    """Seconds until ``folder`` holds exactly the files of ``want`` (rel path -> size)."""
    start = time.perf_counter()
    deadline = start + timeout
    while time.perf_counter() < deadline:
        if _matches(folder, want):
            return time.perf_counter() - start
        time.sleep(0.02)
    raise TimeoutError(f"{folder} did not converge in {timeout:.0f} s")


def _matches(folder: Path, want: dict[str, int]) -> bool:
    for rel, size in want.items():
        try:
            if (folder / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    if not want:  # deletions: nothing but folders left
        return not any(
            not name.startswith(".") for _, _, files in os.walk(folder) for name in files
        )
    return True


# -- workloads ------------------------------------------------------------------------------
def make_big(folder: Path, tag: str, mib: int) -> dict[str, int]:
    path = folder / f"big-{tag}.bin"
    tmp = folder.parent / f".{path.name}"
    with tmp.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))
    os.replace(tmp, path)
    return {path.name: mib * MiB}


def make_small(folder: Path, tag: str, count: int, size: int, dirs: int) -> dict[str, int]:
    staging = folder.parent / f"stage-{tag}"
    want = {}
    for i in range(count):
        rel = f"small-{tag}/d{i % dirs:03d}/f{i:05d}.bin"
        p = staging / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))
        want[rel] = size
    os.replace(staging / f"small-{tag}", folder / f"small-{tag}")
    staging.rmdir()
    return want


# -- Syncthing ------------------------------------------------------------------------------
_ST_OPTIONS = """
    <options>
        <listenAddress>tcp://127.0.0.1:{listen}</listenAddress>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <relaysEnabled>false</relaysEnabled>
        <natEnabled>false</natEnabled>
        <startBrowser>false</startBrowser>
        <urAccepted>-1</urAccepted>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <crashReportingEnabled>false</crashReportingEnabled>
        <announceLANAddresses>false</announceLANAddresses>
        <restartOnWakeup>false</restartOnWakeup>
        <setLowPriority>false</setLowPriority>
    </options>"""


class SyncthingPair:
    """Two syncthing processes on loopback sharing folder ``bench``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.folders = [work / "st-A" / "folder", work / "st-B" / "folder"]
        self.gui = [_free_port(), _free_port()]
        self.listen = [_free_port(), _free_port()]
        self.keys = [secrets.token_hex(16), secrets.token_hex(16)]
        ids = [self._generate(work / f"st-{n}" / "home") for n in "AB"]
        for i, n in enumerate("AB"):
            self.folders[i].mkdir(parents=True)
            self._write_config(work / f"st-{n}" / "home", i, ids)
        env = {**os.environ, "STNOUPGRADE": "1", "STNODEFAULTFOLDER": "1", "HOME": str(work)}
        for n in "AB":
            home = work / f"st-{n}" / "home"
            log = (work / f"st-{n}" / "log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    ["syncthing", "serve", f"--home={home}", "--no-browser", "--no-restart"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )  # fmt: skip
            )
        self._wait_connected(60)

    @staticmethod
    def _generate(home: Path) -> str:
        out = subprocess.run(
            ["syncthing", "generate", f"--home={home}", "--no-default-folder", "--skip-port-probing"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        for line in (out.stdout + out.stderr).splitlines():
            if "Device ID:" in line:
                return line.split("Device ID:", 1)[1].strip()
        raise RuntimeError(f"syncthing generate printed no device ID: {out.stdout}{out.stderr}")

    def _write_config(self, home: Path, i: int, ids: list[str]) -> None:
        devices = "".join(
            f'<device id="{dev}" name="{n}" compression="metadata" introducer="false">'
            f"<address>tcp://127.0.0.1:{self.listen[j]}</address></device>"
            for j, (dev, n) in enumerate(zip(ids, "AB", strict=True))
        )
        folder_devices = "".join(f'<device id="{dev}"></device>' for dev in ids)
        config = (
            '<configuration version="36">'
            f'<folder id="bench" label="bench" path="{self.folders[i]}" type="sendreceive" '
            'rescanIntervalS="3600" fsWatcherEnabled="false" fsWatcherDelayS="10">'
            f'{folder_devices}<minDiskFree unit="%">0</minDiskFree></folder>'
            f"{devices}"
            f'<gui enabled="true" tls="false"><address>127.0.0.1:{self.gui[i]}</address>'
            f"<apikey>{self.keys[i]}</apikey></gui>"
            f"{_ST_OPTIONS.format(listen=self.listen[i])}</configuration>"
        )
        (home / "config.xml").write_text(config)

    def _rest(self, i: int, method: str, path: str) -> object:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.gui[i]}{path}",
            method=method,
            headers={"X-API-Key": self.keys[i]},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body.strip() else None

    def _wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conns = self._rest(0, "GET", "/rest/system/connections")
                if any(c.get("connected") for c in conns["connections"].values()):  # type: ignore[index]
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError("the two syncthing instances did not connect")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs] + [c for p in self.procs for c in _children(p.pid)]

    def changed(self) -> None:
        """Files changed on A: ask A to rescan now (no watcher delay)."""
        self._rest(0, "POST", "/rest/db/scan?folder=bench")

    def stop(self) -> None:
        stop_procs(self.procs)


# -- Tessera --------------------------------------------------------------------------------
class TesseraPair:
    """A local cluster and two sync daemons (separate processes) of one user."""

    def __init__(self, work: Path) -> None:
        import asyncio

        from devcluster import LocalCluster

        self.work = work
        self.cluster = LocalCluster.start(work / "cluster", meta_port=0, fast=True)
        token = asyncio.run(_new_user(self.cluster.meta_address, self.cluster.admin_token))
        self.folders = [work / "ts-A" / "folder", work / "ts-B" / "folder"]
        env = {**os.environ, "TESSERA_TOKEN": token, "XDG_CONFIG_HOME": str(work / "xdg"),
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        self.procs: list[subprocess.Popen[bytes]] = []
        for i, n in enumerate("AB"):
            self.folders[i].mkdir(parents=True)
            log = (work / f"ts-{n}.log").open("wb")
            cmd = [sys.executable, "-m", "cli", "--endpoint", self.cluster.meta_address, "sync",
                   str(self.folders[i]), "--state-dir", str(work / f"ts-{n}" / "state"),
                   "--device", n, "--settle", "0.1"]  # fmt: skip
            self.procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            )
        time.sleep(3)  # both daemons connected and idle (an empty folder)
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"a tessera daemon exited: see {work}/ts-*.log")

    def pids(self) -> list[int]:
        cluster = self.cluster.pids()
        return cluster + [c for p in cluster for c in _children(p)] + [p.pid for p in self.procs]

    def by_process(self) -> dict[str, list[int]]:
        """PIDs grouped as block / meta / sync / backends / daemons."""
        out: dict[str, list[int]] = {"daemons": [p.pid for p in self.procs]}
        for kind in ("block", "meta", "sync"):
            pids = [int(n["pid"]) for n in self.cluster.nodes(kind) if n.get("pid")]
            out[kind] = pids + [c for p in pids for c in _children(p)]
        known = {p for v in out.values() for p in v}
        out["backends"] = [p for p in self.cluster.pids() if p not in known]
        out["backends"] += [c for p in out["backends"] for c in _children(p)]
        return out

    def changed(self) -> None:
        """Nothing to do: the daemon's watcher sees the change."""

    def stop(self) -> None:
        stop_procs(self.procs)
        self.cluster.stop()


async def _new_user(endpoint: str, admin_token: str) -> str:
    import uuid

    from client import Client

    name, password = f"bench{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    async with await Client.connect(endpoint, token=admin_token) as admin:
        await admin.create_user(name, password)
    return (await Client.login(endpoint, name, password)).token


# -- the run --------------------------------------------------------------------------------


def delete_workload(side: SyncthingPair | TesseraPair, tag: str, timeout: float) -> float:
    """Seconds from deleting A's copy of the small files to B having none of them left."""
    a, b = side.folders
    shutil.rmtree(a / f"small-{tag}")
    side.changed()
    took = wait_tree(b / f"small-{tag}", {}, timeout) if (b / f"small-{tag}").exists() else 0.0
    # Wait until B removed the emptied folders too (both do), bounded.
    deadline = time.monotonic() + timeout
    while (b / f"small-{tag}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return took


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=2, help="Tessera runs (Syncthing runs in between)")
    p.add_argument("--big-mib", type=int, default=256)
    p.add_argument("--files", type=int, default=2000)
    p.add_argument(
        "--tiny", type=int, default=0, help="also N files of 1 KiB in N/100 folders (20000)"
    )
    p.add_argument("--only", default="big,small,delete", help="comma list of big,small,delete,tiny")
    p.add_argument("--tessera-only", action="store_true", help="skip Syncthing (profiling runs)")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy (in PATH or the venv) records every Tessera process into DIR",
    )
    p.add_argument("--root", help="run the Tessera of another checkout (before/after runs)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop both pairs on the way out
    global ROOT
    ROOT = Path(args.root).resolve() if args.root else ROOT
    sys.path.insert(0, str(ROOT))
    if shutil.which("syncthing") is None and not args.tessera_only:
        print("syncthing is not installed (Debian: apt-get install syncthing); nothing to compare")
        return
    only = set(args.only.split(","))
    if args.tiny:
        only.add("tiny")
    with tempfile.TemporaryDirectory(prefix="vs-syncthing-") as tmp:
        work = Path(tmp)
        sides: dict[str, SyncthingPair | TesseraPair] = {}
        try:
            sides["tessera"] = TesseraPair(work)
            if not args.tessera_only:
                sides["syncthing"] = SyncthingPair(work)
            spies = _profile(sides["tessera"], Path(args.profile)) if args.profile else []
            results = _run(sides, args, only)
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            for spy in spies:
                spy.wait(60)
        finally:
            for side in sides.values():
                side.stop()
    _report(results, args)


def _profile(side: TesseraPair, out: Path) -> list[subprocess.Popen[bytes]]:
    """Start py-spy on the Tessera daemons and nodes (collapsed stacks, one file per process)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for group, pids in side.by_process().items():
        if group == "backends":
            continue
        for i, pid in enumerate(pids):
            cmd = [spy, "record", "--format", "raw", "--rate", "50", "--nonblocking",
                   "--pid", str(pid), "-o", str(out / f"{group}-{i}.txt")]  # fmt: skip
            procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
    return procs


def _run(
    sides: dict[str, SyncthingPair | TesseraPair], args: argparse.Namespace, only: set[str]
) -> dict:
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    order = ["tessera", "syncthing"] * args.rounds
    if len(sides) > 1:  # T, S, T, ...: Tessera runs first and last
        order = order[: max(2, 2 * args.rounds - 1)]
    else:
        order = ["tessera"] * args.rounds
    for r, name in enumerate(order):
        _round(sides[name], name, r, args, only, results.setdefault(name, {}))
    return results


def _round(
    side: SyncthingPair | TesseraPair,
    name: str,
    r: int,
    args: argparse.Namespace,
    only: set[str],
    res: dict[str, list[tuple[float, float]]],
) -> None:
    """One side's run of every workload asked for, with CPU seconds (by process for Tessera)."""
    tag = f"{name[0]}{r}"
    a, b = side.folders

    def one(key: str, label: str, work: Callable[[], float]) -> None:
        groups = side.by_process() if isinstance(side, TesseraPair) else {}
        before = {g: cpu_seconds(p) for g, p in groups.items()}
        cpu0 = cpu_seconds(side.pids())
        took = work()
        cpu = cpu_seconds(side.pids()) - cpu0
        res.setdefault(key, []).append((took, cpu))
        by = {g: round(cpu_seconds(p) - before[g], 1) for g, p in groups.items()}
        print(
            f"  {name:9} round {r}: {label:18} {took:7.2f} s  cpu {cpu:6.1f} s  {by or ''}",
            flush=True,
        )

    def move(make: Callable[[Path], dict[str, int]], timeout: float) -> float:
        want = make(a)
        side.changed()
        return wait_tree(b, want, timeout)

    if "big" in only:
        one(
            "big",
            f"{args.big_mib} MiB file",
            lambda: move(lambda f: make_big(f, tag, args.big_mib), 600),
        )
        (a / f"big-{tag}.bin").unlink()
    if "small" in only:
        one(
            "small",
            f"{args.files} x 8 KiB",
            lambda: move(lambda f: make_small(f, tag, args.files, 8192, 20), 900),
        )
        if "delete" in only:
            one("delete", f"delete {args.files}", lambda: delete_workload(side, tag, 900))
    if "tiny" in only and args.tiny:
        dirs = max(1, args.tiny // 100)
        one("tiny", f"{args.tiny} x 1 KiB",
            lambda: move(lambda f: make_small(f, tag + "t", args.tiny, 1024, dirs), 1800))  # fmt: skip


def _report(results: dict, args: argparse.Namespace) -> None:
    labels = {"big": f"{args.big_mib} MiB new file A->B", "small": f"{args.files} x 8 KiB in 20 folders A->B",
              "delete": f"delete those {args.files}", "tiny": f"{args.tiny} x 1 KiB A->B"}  # fmt: skip
    flat: dict[str, float] = {}
    print("\n| workload | Syncthing s | Tessera s | ratio | Syncthing CPU s | Tessera CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, label in labels.items():
        ts = results.get("tessera", {}).get(key)
        if not ts:
            continue
        t_med = statistics.median(t for t, _ in ts)
        t_cpu = statistics.median(c for _, c in ts)
        st = results.get("syncthing", {}).get(key)
        s_med = statistics.median(t for t, _ in st) if st else float("nan")
        s_cpu = statistics.median(c for _, c in st) if st else float("nan")
        ratio = t_med / s_med if st and s_med > 0 else float("nan")
        print(f"| {label} | {s_med:.2f} | {t_med:.2f} | {ratio:.2f}x | {s_cpu:.1f} | {t_cpu:.1f} |")
        flat.update({f"{key}_tessera_s": t_med, f"{key}_syncthing_s": s_med, f"{key}_ratio": ratio})
    print("RESULT " + json.dumps({k: round(v, 3) for k, v in flat.items() if v == v}))


if __name__ == "__main__":
    main()
