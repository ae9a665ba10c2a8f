"""The planner's simulation (CanopyCheck-like): seeded random trees and operations, run to
quiescence through the real planner, checked for convergence, no loss, safety, idempotence.

Each case: a server and two or three devices; a random history of user operations (writes,
edits, chmods, folder deletes racing adds, moves racing adds, case-only and NFC/NFD renames,
twins, 240-byte names, symlinks in the local tree, ignore changes) interleaved with sync
cycles and offline periods; then every device comes online and syncs until nothing changes.

Invariants after quiescence:
- every device's tree (outside its symlinks and ignored names) equals the server's (names
  compared in NFC: the server stores NFC and a disk may keep the NFD form it was given);
- no content is lost: every version a device wrote is in the final tree (under any name, a
  conflicted copy counts; an ignored file, or one in a reported clash, counts where it is)
  unless a device that had it on disk deleted or replaced it;
- no write left the root or passed through a symlink (``Device.write_ok``);
- planning again from the settled state emits nothing.

``TESSERA_SIM_CASES`` sets the number of cases (default 100,000, in batches over the
parametrised tests); ``TESSERA_SIM_SEED`` replays one case. A failing case prints its seed.
"""

from __future__ import annotations

import os
import random
import sys
import unicodedata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sim_engine import cycle, index, reconcile  # noqa: E402
from sim_model import LINK, DEnt, Device, Server, Unsafe, key_of, nfc, parent  # noqa: E402

from syncd.localdb import FILE, FOLDER, rebase  # noqa: E402

CASES = int(os.environ.get("TESSERA_SIM_CASES", "100000"))
BATCHES = 8
SEED_STRIDE = 10_000_019  # batch b runs seeds b * SEED_STRIDE + 0, 1, 2, ...
SEED = os.environ.get("TESSERA_SIM_SEED")
# Open bugs the simulation found and that are not fixed yet (0.23% of the default cases, listed
# in sim_known_open.txt). Those examined (626, 958, 1680, 4533) all involve a folder's case
# twin on a case-sensitive disk (a local "D" beside the server's "d") meeting a concurrent move or
# delete of that folder: the device keeps its spelling, or a conflicted copy the server put into
# the moved folder, apart from the server. In 4533 a folder moved onto the key of an ignored local
# file ("Lあ/a" onto "Lあ/A") overwrites it in the model, whose disk holds one spelling per key (a
# real case-sensitive disk keeps both: a gap of the model and of the twin rule for unindexed files).
# The rest were not examined one by one. Each still fails (checked), so a fix takes it off the list.
KNOWN_OPEN = frozenset(
    int(line)
    for line in (Path(__file__).parent / "sim_known_open.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)

LONG = "あ" * 80  # 240 bytes: valid on the server, and its conflicted copy must still fit
TOPS = ["d", "D", "\u00e9", unicodedata.normalize("NFD", "\u00e9"), LONG]
LEAVES = ["a", "A", "b.txt", LONG]


class Case:
    """One generated history."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.server = Server()
        self.devices = [Device(f"dev{i}", self.server) for i in range(self.rng.choice((2, 2, 3)))]
        self.written: set[str] = set()
        self.replaced: set[str] = set()  # versions deleted or overwritten by a device that had them
        self.n = 0
        self.trace: list[str] = []

    def note(self, d: Device, what: str) -> None:
        self.trace.append(f"{d.name}: {what}")

    # -- user operations -------------------------------------------------------------------
    def path(self, d: Device) -> str:
        """A random path, in the spelling of the folder already on ``d``'s disk if any."""
        top = self.rng.choice(TOPS)
        here = d.disk.get(key_of(top))
        if here is not None and here.kind == FOLDER:
            top = here.path
        return top if self.rng.random() < 0.3 else f"{top}/{self.rng.choice(LEAVES)}"

    def content(self, d: Device) -> str:
        self.n += 1
        c = f"c{self.n}@{d.name}"
        self.written.add(c)
        return c

    def _gone(self, d: Device, path: str) -> None:
        """The user removes ``path`` (and what is inside): every version there was seen."""
        k = key_of(path)
        for kk in [kk for kk in d.disk if kk == k or kk.startswith(k + "/")]:
            e = d.disk.pop(kk)
            if e.kind == FILE:
                self.replaced.add(e.content)

    def write(self, d: Device) -> None:
        path = self.path(d)
        if d.hidden(path):
            return
        e = d.disk.get(key_of(path))
        if e is not None and e.path != path:
            path = d.conflicted_copy(path)  # a twin: the second name is kept as a conflicted copy
            e = None
        if e is not None and e.kind != FILE:
            return
        if e is not None:
            self.replaced.add(e.content)
        d.makedirs(parent(path), index=False)
        d.put(
            DEnt(path, FILE, self.content(d), self.rng.random() < 0.2, e.inode if e else 0),
            index=False,
        )
        self.note(d, f"write {path!r} = {d.disk[key_of(path)].content}")

    def op(self, d: Device) -> None:
        roll = self.rng.random()
        files = [e for e in d.disk.values() if e.kind == FILE]
        entries = [e for e in d.disk.values() if e.kind in (FILE, FOLDER)]
        if roll < 0.35 or not entries:
            self.write(d)
        elif roll < 0.45 and files:
            e = self.rng.choice(files)
            d.disk[key_of(e.path)] = DEnt(e.path, FILE, e.content, not e.exe, e.inode)
            self.note(d, f"chmod {e.path!r}")
        elif roll < 0.6:
            gone = self.rng.choice(entries).path
            self.note(d, f"rm -r {gone!r}")
            self._gone(d, gone)
        elif roll < 0.8:
            self.move(d, self.rng.choice(entries))
        elif roll < 0.87:
            top = self.rng.choice(TOPS)
            e = d.disk.get(key_of(top))
            if e is None:
                d.disk[key_of(top)] = DEnt(top, LINK)  # a symlink to somewhere outside
                self.note(d, f"ln -s {top!r}")
            elif e.kind == LINK:
                del d.disk[key_of(top)]
                self.note(d, f"rm symlink {top!r}")
        elif roll < 0.93:
            name = key_of(self.rng.choice(TOPS))
            d.ignored ^= {name}
            self.note(d, f"ignore {sorted(d.ignored)}")
        else:
            d.online = not d.online
            self.note(d, "online" if d.online else "offline")

    def move(self, d: Device, e: DEnt) -> None:
        name = e.path.rpartition("/")[2]
        roll = self.rng.random()
        if roll < 0.3:
            new_name = name.swapcase() if name.swapcase() != name else name.upper() + "x"
        elif roll < 0.45:
            form = "NFD" if unicodedata.is_normalized("NFC", name) else "NFC"
            new_name = unicodedata.normalize(form, name)
        else:
            new = self.path(d)
            if key_of(new) == key_of(e.path) or key_of(new).startswith(key_of(e.path) + "/"):
                return
            if key_of(new) in d.disk or d.hidden(new):
                return
            d.makedirs(parent(new), index=False)
            self._rename(d, e.path, new)
            return
        new = f"{parent(e.path)}/{new_name}" if parent(e.path) else new_name
        if new == e.path or (key_of(new) in d.disk and key_of(new) != key_of(e.path)):
            return
        self._rename(d, e.path, new)

    def _rename(self, d: Device, old: str, new: str) -> None:
        self.note(d, f"mv {old!r} {new!r}")
        k = key_of(old)
        for kk in [kk for kk in d.disk if kk == k or kk.startswith(k + "/")]:
            v = d.disk.pop(kk)
            moved = rebase(v.path, old, new)
            d.disk[key_of(moved)] = DEnt(moved, v.kind, v.content, v.exe, v.inode)

    # -- running -----------------------------------------------------------------------------
    def run(self) -> None:
        for _ in range(self.rng.randint(3, 9)):
            d = self.rng.choice(self.devices)
            self.op(d)
            if self.rng.random() < 0.5:
                d = self.rng.choice(self.devices)
                self.note(d, f"sync ({cycle(d)} steps)")
        for d in self.devices:
            d.online = True
        for _ in range(40):
            if sum(cycle(d) for d in self.devices) == 0:
                break
        else:
            raise AssertionError("no quiescence after 40 rounds")

    def check(self) -> None:
        srv = self.server.tree()
        kept = {c for _, kind, c, _ in srv.values() if kind == FILE}
        for d in self.devices:
            blocked = {k for k, e in d.disk.items() if e.kind == LINK} | d.skipped
            mine = {
                k: (nfc(e.path), e.kind, e.content, e.exe)
                for k, e in d.disk.items()
                if e.kind != LINK
                and not d.hidden(e.path)
                and not d.is_ignored(e.path)
                and not _under_any(k, blocked)
            }
            theirs = {
                k: v
                for k, v in srv.items()
                if not d.is_ignored(v[0]) and not _under_any(k, blocked)
            }
            assert mine == theirs, f"{d.name} differs from the server:\n{_diff(mine, theirs)}"
            # Ignored files stay on their device; a clash (a file where the server has a
            # folder, or the reverse) is reported and skipped: its files stay there too.
            kept |= {
                e.content
                for k, e in d.disk.items()
                if e.kind == FILE and (d.is_ignored(e.path) or _under_any(k, d.skipped))
            }
            assert index(d) == 0 and not d.ops, f"{d.name} plans local work again: {d.ops}"
            assert reconcile(d) == 0, f"{d.name} plans remote work again"
        lost = self.written - kept - self.replaced
        assert not lost, f"versions lost: {sorted(lost)}"


def _under_any(k: str, tops: set[str]) -> bool:
    return any(k == t or k.startswith(t + "/") for t in tops)


def _diff(a: dict, b: dict) -> str:
    keys = sorted(a.keys() | b.keys())
    return "\n".join(
        f"  {k!r}: device={a.get(k)} server={b.get(k)}" for k in keys if a.get(k) != b.get(k)
    )


def run_case(seed: int) -> None:
    case = Case(seed)
    try:
        case.run()
        case.check()
    except (AssertionError, Unsafe) as e:
        history = "\n".join(case.trace)
        raise AssertionError(
            f"simulation seed {seed} failed (replay: TESSERA_SIM_SEED={seed}): {e}\nhistory:\n{history}"
        ) from e


def _batch(batch: int) -> range:
    per = CASES // BATCHES + (1 if batch < CASES % BATCHES else 0)
    return range(batch * SEED_STRIDE, batch * SEED_STRIDE + per)


@pytest.mark.parametrize("batch", range(BATCHES))
def test_planner_simulation(batch: int) -> None:
    """Every generated case passes, except the open bugs listed in ``KNOWN_OPEN`` (which must
    still fail: a fixed one leaves the list)."""
    if SEED is not None:
        if batch == 0:
            run_case(int(SEED))
        return
    failed: dict[int, str] = {}
    for seed in _batch(batch):
        try:
            run_case(seed)
        except AssertionError as e:
            failed[seed] = str(e)
    new = {seed: why for seed, why in failed.items() if seed not in KNOWN_OPEN}
    assert not new, "\n\n".join(new.values())
    mine = {seed for seed in KNOWN_OPEN if seed in _batch(batch)}
    assert mine <= failed.keys(), f"fixed, take them off KNOWN_OPEN: {sorted(mine - failed.keys())}"


def test_the_checks_catch_a_lost_version() -> None:
    """A server that forgets a file fails the no-loss check (the invariant can fail)."""
    case = Case(7)
    d = case.devices[0]
    d.put(DEnt("d/a", FILE, case.content(d)), index=False)
    case.run()
    for e in case.server.ents.values():
        e.deleted = True
    with pytest.raises(AssertionError):
        case.check()


def test_the_checks_catch_a_write_through_a_symlink() -> None:
    d = Device("dev0", Server())
    d.disk[key_of("d")] = DEnt("d", LINK)
    with pytest.raises(Unsafe):
        d.put(DEnt("d/a", FILE, "c"))
