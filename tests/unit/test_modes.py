"""The modes a file written from a revision gets (pure)."""

from __future__ import annotations

import pytest

from client import _modes


@pytest.mark.parametrize(
    ("mask", "executable", "current", "expect"),
    [
        (0o022, False, None, 0o644),
        (0o022, True, None, 0o755),
        (0o077, True, None, 0o700),
        (0o002, True, None, 0o775),
        (0o022, True, 0o600, 0o700),  # replacing a private file keeps it private
        (0o022, False, 0o751, 0o640),  # the execute bits come from the revision only
        (0o133, True, None, 0o644),  # a umask that forbids execute wins
    ],
)
def test_file_mode(
    monkeypatch, mask: int, executable: bool, current: int | None, expect: int
) -> None:
    monkeypatch.setattr(_modes, "_umask", mask)
    assert _modes.file_mode(executable, current) == expect


def test_umask_is_the_process_umask() -> None:
    import os

    now = os.umask(0o022)
    os.umask(now)
    assert _modes.umask() == now
