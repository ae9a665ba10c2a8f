"""The CLI's account commands end to end: login (devices, --switch), whoami, devices, devices
revoke, passwd, logout, and admin user list / user rm."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from client import AuthenticationError, Client
from tests.integration.helpers import cli_fails, cli_ok, cluster_cli

pytestmark = pytest.mark.cluster


_run, _ok, _fails = cluster_cli, cli_ok, cli_fails


def _saved_token(home: Path) -> str:
    return str(json.loads((home / "tessera" / "config.json").read_text())["token"])


async def _refused(cluster, token: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        await (await Client.connect(cluster.meta_address, token=token)).close()
    except AuthenticationError:
        return True
    return False


async def test_account_commands(cluster, tmp_path: Path) -> None:
    name, password = f"a{uuid.uuid4().hex[:10]}", "pw-" + uuid.uuid4().hex
    other = f"b{uuid.uuid4().hex[:10]}"
    admin = cluster.admin_token
    _ok(_run(cluster, tmp_path / "admin", "user", "add", name, "--password", password, token=admin))
    _ok(
        _run(cluster, tmp_path / "admin", "user", "add", other, "--password", password, token=admin)
    )
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"

    out = _ok(_run(cluster, laptop, "login", name, "--password", password, "--device", "laptop"))
    assert f"logged in as {name}" in out and "device laptop" in out
    assert f"{name} on device laptop" in _ok(_run(cluster, laptop, "whoami"))
    _ok(_run(cluster, phone, "login", name, "--password", password, "--device", "phone"))

    rows = _ok(_run(cluster, laptop, "devices")).splitlines()
    assert rows[0].split() == ["DEVICE", "CREATED", "LAST", "SEEN"]
    listed = {r[2:].split()[0]: r for r in rows[1:]}
    assert set(listed) == {"laptop", "phone"} and listed["laptop"].startswith("*")

    # Logged in as someone else: login says so and changes nothing, unless --switch.
    refused = _fails(_run(cluster, laptop, "login", other, "--password", password))
    assert f"logged in as {name}" in refused and "--switch" in refused
    assert f"{name} on device laptop" in _ok(_run(cluster, laptop, "whoami"))

    # Revoking a device ends it on the cluster; the other device goes on.
    phone_token = _saved_token(phone)
    assert "revoked device phone" in _ok(_run(cluster, laptop, "devices", "revoke", "phone"))
    assert "revoked" in _fails(_run(cluster, phone, "whoami"))
    assert await _refused(cluster, phone_token)
    assert "no device named" in _fails(_run(cluster, laptop, "devices", "revoke", "phone"))

    # passwd: this terminal keeps working with a fresh token; other logins die; old password too.
    _ok(_run(cluster, phone, "login", name, "--password", password, "--device", "phone"))
    phone_token = _saved_token(phone)
    new_password = "new-" + password
    assert "wrong" in _fails(
        _run(
            cluster, laptop, "passwd", "--old-password", "nope-nope", "--new-password", new_password
        )
    )
    assert "password changed" in _ok(
        _run(cluster, laptop, "passwd", "--old-password", password, "--new-password", new_password)
    )
    assert f"{name} on device laptop" in _ok(_run(cluster, laptop, "whoami"))
    assert await _refused(cluster, phone_token)
    assert "wrong user name or password" in _fails(
        _run(cluster, phone, "login", name, "--password", password)
    )
    _ok(_run(cluster, phone, "login", name, "--password", new_password, "--device", "phone"))

    # logout: revoked on the cluster and forgotten here.
    laptop_token = _saved_token(laptop)
    assert f"logged out {name}" in _ok(_run(cluster, laptop, "logout"))
    assert _saved_token(laptop) == ""
    assert await _refused(cluster, laptop_token)
    assert "not logged in" in _fails(_run(cluster, laptop, "whoami"))

    # --switch replaces (and logs out) the previous user.
    phone_token = _saved_token(phone)
    out = _ok(_run(cluster, phone, "login", other, "--password", password, "--switch"))
    assert f"logged in as {other}" in out and "was logged out" in out
    assert await _refused(cluster, phone_token)

    # Admin: user list, user rm.
    assert "only an admin" in _fails(_run(cluster, phone, "user", "list"))
    users = _ok(_run(cluster, tmp_path / "admin", "user", "list", token=admin)).splitlines()
    names = {line.split()[0]: line.split() for line in users[1:]}
    assert names["admin"][1] == "admin" and names[name][1] == "user"
    _ok(_run(cluster, phone, "login", name, "--password", new_password, "--switch"))
    victim = _saved_token(phone)
    out = _ok(_run(cluster, tmp_path / "admin", "user", "rm", name, "--yes", token=admin))
    assert f"deleted user {name}" in out
    assert await _refused(cluster, victim)
    users = _ok(_run(cluster, tmp_path / "admin", "user", "list", token=admin))
    assert name not in users.split()
    assert "no user named" in _fails(
        _run(cluster, tmp_path / "admin", "user", "rm", name, "--yes", token=admin)
    )
    own = _run(cluster, tmp_path / "admin", "user", "rm", "admin", "--yes", token=admin)
    assert "your own account" in _fails(own)
