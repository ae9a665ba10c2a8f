"""Load profiles: how many users and devices, which files, which operations, for how long.

A profile is plain data. Every bound the harness obeys lives here: users, devices, operations,
seconds of load, the largest file, and the time any one call may take. ``small`` runs in the
test suite; ``medium`` and ``large`` are for a manual run against ``tessera up`` or a deployed
cluster.

File sizes follow the target workload (``docs/scale.md``: 200 files per user, 10–100 PB over
500M users, so about 1 MB per file on average): a log-normal around a median of 100 KiB with a
long tail (sigma 2.0 puts the mean near 700 KiB before the cap and 3 % of files above 4 MiB),
cut at each profile's ``max_file_bytes``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

READ_OPS = ("get", "list", "stat")
WRITE_OPS = ("create", "edit", "copy", "move", "delete")
LOAD_OPS = WRITE_OPS + READ_OPS


@dataclass(frozen=True)
class OpMix:
    """Relative weights of the operations a device picks during the load phase.

    Writes (create, edit, copy, move, delete) and reads (get, list, stat) each weigh 0.5, so
    reads are about as many as writes. ``create`` and ``copy`` turn into ``edit`` once a user
    has their ``files_per_user``; ``move`` and ``delete`` drop out (and their weight with them)
    when the SDK or the cluster cannot do them.
    """

    create: float = 0.24
    edit: float = 0.16
    copy: float = 0.05
    move: float = 0.03
    delete: float = 0.02
    get: float = 0.40
    list: float = 0.05
    stat: float = 0.05

    def weights(self) -> dict[str, float]:
        """Operation name to weight, in a fixed order."""
        return {op: float(getattr(self, op)) for op in LOAD_OPS}


@dataclass(frozen=True)
class Profile:
    """Everything that sizes and bounds one load run."""

    name: str
    users: int
    devices_per_user: int
    files_per_user: int
    max_file_bytes: int
    duration: float  # seconds of load after setup
    max_ops: int  # operations in the load phase, all devices together
    median_file_bytes: int = 100 * KiB
    size_sigma: float = 2.0  # of the log-normal size distribution
    workers_per_device: int = 1  # operations one device keeps in flight
    think_time: float = 0.0  # mean pause between one worker's operations (exponential), s
    share: bool = True  # each user shares a folder with the next user (editor)
    shared_fraction: float = 0.2  # of a member's operations that go to shared folders
    op_timeout: float = 60.0  # any single operation, s
    setup_timeout: float = 120.0  # creating users, logging in, sharing, warm-up, s
    warmup_timeout: float = 20.0  # waiting for every subscriber to see the markers, s
    sync_grace: float = 10.0  # after the load, waiting for changes still propagating, s
    seed: int = 1
    mix: OpMix = field(default_factory=OpMix)

    def replace(self, **changes: Any) -> Profile:
        """A copy with the given fields changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def validated(self) -> Profile:
        """Check the bounds; raises ValueError naming the field."""
        positive = {
            "users": self.users,
            "devices_per_user": self.devices_per_user,
            "files_per_user": self.files_per_user,
            "max_file_bytes": self.max_file_bytes,
            "duration": self.duration,
            "max_ops": self.max_ops,
            "median_file_bytes": self.median_file_bytes,
            "workers_per_device": self.workers_per_device,
            "op_timeout": self.op_timeout,
            "setup_timeout": self.setup_timeout,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"profile {self.name}: {name} must be positive, not {value}")
        if self.users > 1000 or self.devices_per_user > 10 or self.workers_per_device > 16:
            raise ValueError(
                f"profile {self.name}: at most 1000 users, 10 devices each, 16 workers a device"
            )
        if self.max_ops > 1_000_000 or self.duration > 24 * 3600:
            raise ValueError(f"profile {self.name}: at most 1,000,000 operations and 24 hours")
        if not 0.0 <= self.shared_fraction <= 1.0:
            raise ValueError(f"profile {self.name}: shared_fraction must be within [0, 1]")
        if self.size_sigma < 0 or self.think_time < 0:
            raise ValueError(f"profile {self.name}: size_sigma and think_time must be >= 0")
        if min(self.warmup_timeout, self.sync_grace) < 0:
            raise ValueError(f"profile {self.name}: timeouts must be >= 0")
        if sum(self.mix.weights().values()) <= 0:
            raise ValueError(f"profile {self.name}: the operation mix has no weight")
        return self

    def summary(self) -> dict[str, Any]:
        """The profile as JSON-ready data (for the report)."""
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "small": Profile(
        name="small",
        users=3,
        devices_per_user=2,
        files_per_user=20,
        max_file_bytes=4 * MiB,
        size_sigma=1.6,
        duration=15.0,
        max_ops=400,
        op_timeout=20.0,
        setup_timeout=30.0,
        warmup_timeout=10.0,
        sync_grace=5.0,
    ),
    "medium": Profile(
        name="medium",
        users=8,
        devices_per_user=3,
        files_per_user=100,
        max_file_bytes=64 * MiB,
        duration=120.0,
        max_ops=5_000,
    ),
    "large": Profile(
        name="large",
        users=20,
        devices_per_user=3,
        files_per_user=200,
        max_file_bytes=1 * GiB,
        duration=300.0,
        max_ops=20_000,
        workers_per_device=2,
        op_timeout=300.0,
        setup_timeout=300.0,
        warmup_timeout=40.0,
        sync_grace=20.0,
    ),
}


def get_profile(name: str) -> Profile:
    """The named profile; raises KeyError listing the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}: choose {', '.join(PROFILES)}") from None
