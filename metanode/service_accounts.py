"""Account RPCs: login, who am I, users, devices, logout, password changes, deleting users.

Every revocation is written to etcd first (``tessera.revocation``: every node's interceptor
and the sync node's open streams follow it within milliseconds), then to the database; a
failure in between leaves the credential revoked on the nodes and the call can be retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aetcd
import grpc

from metanode import accounts, users
from metanode.accounts import DeviceRow
from metanode.db import Conn
from metanode.rpcbase import Handlers
from tessera import revocation
from tessera.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable
from tessera.pb import meta_pb2
from tessera.rpc import current_principal

PUBLISH_TIMEOUT = 5.0


def _us(ts: dt.datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def _device_pb(d: DeviceRow, current: str) -> meta_pb2.Device:
    return meta_pb2.Device(
        device_id=d.device_id,
        name=d.name,
        created_at_us=_us(d.created_at),
        last_seen_at_us=_us(d.last_seen),
        expires_at=int(d.expires_at.timestamp()),
        current=d.device_id == current,
    )


class AccountRpcs(Handlers):
    """Login, WhoAmI, CreateUser, RevokeToken, ListDevices, RevokeDevice, ChangePassword,
    ListUsers, DeleteUser."""

    # -- sessions and users ----------------------------------------------------------------
    async def Login(
        self, request: meta_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.LoginResponse:
        found = await self.db.run(lambda conn: users.fetch_user(conn, name=request.name))
        if found is None:
            # Spend the same KDF time as for a real user, so timing does not reveal who exists.
            await users.verify_password(await users.hash_password("x" * 16), "not-it")
            raise Unauthenticated("wrong user name or password")
        user, pw_hash = found
        await users.verify_password(pw_hash, request.password)
        device_name = accounts.check_device_name(request.device_name)
        generation = await self.db.run(lambda conn: accounts.generation(conn, user.user_id))
        token, principal = self.signer.issue_token(
            str(user.user_id),
            ttl=self.token_ttl,
            is_admin=user.is_admin,
            token_id=str(uuid.uuid4()),
            generation=generation,
        )
        stored = await self.db.run(
            lambda conn: accounts.add_device(
                conn, user.user_id, principal.token_id, device_name, principal.expires_at
            )
        )
        return meta_pb2.LoginResponse(
            token=token,
            user_id=str(user.user_id),
            root_namespace_id=str(user.root_ns),
            expires_at=principal.expires_at,
            device_id=principal.token_id,
            device_name=stored,
        )

    async def WhoAmI(
        self, request: meta_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.WhoAmIResponse:
        principal = current_principal()

        async def body(conn: Conn, uid: uuid.UUID) -> Any:
            found = await users.fetch_user(conn, user_id=uid)
            devices = [] if principal.is_node else await accounts.list_devices(conn, uid)
            return found, next((d.name for d in devices if d.device_id == principal.token_id), "")

        found, device_name = await self._txn(context, body)
        if found is None:
            raise Unauthenticated("unknown user: log in again")
        user = found[0]
        return meta_pb2.WhoAmIResponse(
            user_id=str(user.user_id),
            name=user.name,
            root_namespace_id=str(user.root_ns),
            is_admin=user.is_admin,
            device_id="" if principal.is_node else principal.token_id,
            device_name=device_name,
            expires_at=principal.expires_at,
        )

    async def CreateUser(
        self, request: meta_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CreateUserResponse:
        await self._require_admin(context, "add users")
        name = users.check_user_name(request.name)
        pw_hash = await users.hash_password(request.password)
        user = await self.db.run(
            lambda conn: users.create_user(conn, name, pw_hash, is_admin=request.is_admin)
        )
        return meta_pb2.CreateUserResponse(
            user_id=str(user.user_id), root_namespace_id=str(user.root_ns)
        )

    async def RevokeToken(
        self, request: meta_pb2.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RevokeTokenResponse:
        principal = current_principal()
        if principal.is_node:
            raise InvalidArgument("nodes have no token to revoke")
        token_id = request.token_id or principal.token_id
        expires_at = (
            principal.expires_at
            if token_id == principal.token_id
            else int(time.time()) + self.token_ttl
        )
        await self._revoke_device(context, token_id, expires_at)
        return meta_pb2.RevokeTokenResponse()

    async def _publish(self, write: Callable[[aetcd.Client], Awaitable[None]]) -> None:
        """Write a revocation to etcd, or UNAVAILABLE (nothing changed) if etcd is away."""
        if self.etcd is None:
            return
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await write(self.etcd)
        except Exception as e:  # noqa: BLE001 - aetcd's errors, timeouts
            raise Unavailable(
                f"cannot reach etcd to revoke on every node ({e or type(e).__name__}); try again"
            ) from None

    def _user_principal(self) -> str:
        principal = current_principal()
        if principal.is_node:
            raise InvalidArgument("nodes have no devices or password")
        return principal.token_id

    async def _revoke_device(
        self, context: grpc.aio.ServicerContext, device_id: str, expires_at: int
    ) -> None:
        """Revoke one of the caller's devices (tokens) everywhere, then in the database."""
        self._user_principal()
        user_id = await self._txn(context, lambda conn, uid: _return(uid))
        await self._publish(
            lambda etcd: revocation.publish_token(etcd, device_id, str(user_id), expires_at)
        )
        await self._write_txn(
            context, lambda conn, uid: accounts.revoke_device(conn, uid, device_id, expires_at)
        )

    async def ListDevices(
        self, request: meta_pb2.ListDevicesRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListDevicesResponse:
        current = self._user_principal()
        rows = await self._txn(context, lambda conn, uid: accounts.list_devices(conn, uid))
        return meta_pb2.ListDevicesResponse(devices=[_device_pb(d, current) for d in rows])

    async def RevokeDevice(
        self, request: meta_pb2.RevokeDeviceRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RevokeDeviceResponse:
        current = self._user_principal()
        if not request.name and not request.device_id:
            raise InvalidArgument("name the device to revoke (see: tessera devices)")
        device = await self._txn(
            context,
            lambda conn, uid: accounts.find_device(
                conn, uid, name=request.name, device_id=request.device_id
            ),
        )
        await self._revoke_device(context, device.device_id, int(device.expires_at.timestamp()))
        return meta_pb2.RevokeDeviceResponse(device=_device_pb(device, current))

    async def ChangePassword(
        self, request: meta_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ChangePasswordResponse:
        device_id = self._user_principal()

        async def current(conn: Conn, uid: uuid.UUID) -> tuple[users.User, str, int]:
            found = await users.fetch_user(conn, user_id=uid)
            if found is None:
                raise Unauthenticated("unknown user: log in again")
            return found[0], found[1], await accounts.generation(conn, uid)

        user, pw_hash, generation = await self._txn(context, current)
        try:
            await users.verify_password(pw_hash, request.old_password)
        except Unauthenticated:
            raise PermissionDenied("the current password is wrong") from None
        new_hash = await users.hash_password(request.new_password)
        await self._publish(
            lambda etcd: revocation.publish_generation(
                etcd, str(user.user_id), generation + 1, self.token_ttl
            )
        )
        token, principal = self.signer.issue_token(
            str(user.user_id),
            ttl=self.token_ttl,
            is_admin=user.is_admin,
            token_id=device_id,
            generation=generation + 1,
        )
        await self._write_txn(
            context,
            lambda conn, uid: accounts.set_password(
                conn, uid, new_hash, generation + 1, device_id, principal.expires_at
            ),
        )
        return meta_pb2.ChangePasswordResponse(token=token, expires_at=principal.expires_at)

    async def ListUsers(
        self, request: meta_pb2.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListUsersResponse:
        await self._require_admin(context, "list users")
        rows = await self.db.run(accounts.list_users)
        return meta_pb2.ListUsersResponse(
            users=[
                meta_pb2.UserInfo(
                    user_id=str(u.user_id),
                    name=u.name,
                    is_admin=u.is_admin,
                    created_at_us=_us(u.created_at),
                    devices=u.devices,
                )
                for u in rows
            ]
        )

    async def DeleteUser(
        self, request: meta_pb2.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.DeleteUserResponse:
        await self._require_admin(context, "delete users")
        target = await self._txn(
            context, lambda conn, uid: accounts.user_to_delete(conn, uid, request.name)
        )
        await self._publish(
            lambda etcd: revocation.publish_generation(
                etcd, str(target), revocation.USER_DELETED, self.token_ttl
            )
        )
        deleted = await self._write_txn(
            context, lambda conn, uid: accounts.delete_user(conn, target, "admin")
        )
        self._notify(deleted.notices, membership=True)
        return meta_pb2.DeleteUserResponse(
            user_id=str(deleted.user_id),
            files_deleted=deleted.files_deleted,
            shares_ended=deleted.shares_ended,
        )


async def _return(value: uuid.UUID) -> uuid.UUID:
    return value
