"""The SDK's account calls: who am I, devices, logout, password, and (admins) users.

``AccountCalls`` is a base of ``Client``; it needs the client's metadata stub, call metadata
and timeout, and ``_set_token`` to switch credentials after a password change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera.pb import meta_pb2


@dataclass(frozen=True)
class Me:
    """The caller: user and device (``whoami``)."""

    user_id: str
    name: str
    is_admin: bool
    root_namespace_id: str
    device_id: str
    device_name: str
    expires_at: int


@dataclass(frozen=True)
class Device:
    """One login of a user."""

    device_id: str
    name: str
    created_at_us: int
    last_seen_at_us: int
    expires_at: int
    current: bool

    @classmethod
    def from_pb(cls, d: meta_pb2.Device) -> Device:
        return cls(d.device_id, d.name, d.created_at_us, d.last_seen_at_us, d.expires_at, d.current)


@dataclass(frozen=True)
class UserInfo:
    """One account, as an admin sees it."""

    user_id: str
    name: str
    is_admin: bool
    created_at_us: int
    devices: int


@dataclass(frozen=True)
class DeletedUser:
    user_id: str
    files_deleted: int
    shares_ended: int


class AccountCalls:
    """Account methods of ``Client``."""

    _meta: Any
    _md: tuple[tuple[str, str], ...]
    config: Any

    async def _rpc(self, method: str, request: Any, timeout: float | None = None) -> Any:
        raise NotImplementedError  # Client provides it

    async def _set_token(self, token: str) -> None:
        raise NotImplementedError  # Client provides it

    async def whoami(self) -> Me:
        """The user and device this client's token belongs to."""
        r = await self._rpc("WhoAmI", meta_pb2.WhoAmIRequest())
        return Me(
            r.user_id,
            r.name,
            r.is_admin,
            r.root_namespace_id,
            r.device_id,
            r.device_name,
            r.expires_at,
        )

    async def devices(self) -> list[Device]:
        """This user's live devices (logins), oldest first; ``current`` marks this one."""
        r = await self._rpc("ListDevices", meta_pb2.ListDevicesRequest())
        return [Device.from_pb(d) for d in r.devices]

    async def revoke_device(self, name: str = "", *, device_id: str = "") -> Device:
        """End a device's access on every node (its open streams end within seconds)."""
        r = await self._rpc(
            "RevokeDevice", meta_pb2.RevokeDeviceRequest(name=name, device_id=device_id)
        )
        return Device.from_pb(r.device)

    async def logout(self) -> None:
        """Revoke this client's own token everywhere; the client cannot call afterwards."""
        await self._rpc("RevokeToken", meta_pb2.RevokeTokenRequest())

    async def change_password(self, old_password: str, new_password: str) -> str:
        """Change the password: every other device must log in again; this client switches to
        the fresh token, which is returned (save it)."""
        r = await self._rpc(
            "ChangePassword",
            meta_pb2.ChangePasswordRequest(old_password=old_password, new_password=new_password),
            timeout=30,
        )
        await self._set_token(r.token)
        return str(r.token)

    async def users(self) -> list[UserInfo]:
        """Every account (admin only)."""
        r = await self._rpc("ListUsers", meta_pb2.ListUsersRequest())
        return [
            UserInfo(u.user_id, u.name, u.is_admin, u.created_at_us, u.devices) for u in r.users
        ]

    async def delete_user(self, name: str) -> DeletedUser:
        """Delete an account (admin only): its tokens die everywhere, its shares end, its files
        are deleted as revisions (kept as long as the retention rules say)."""
        r = await self._rpc("DeleteUser", meta_pb2.DeleteUserRequest(name=name), timeout=120)
        return DeletedUser(r.user_id, r.files_deleted, r.shares_ended)
