"""Revocation feed: how a revoked token, device, password or user reaches every node in ~ms.

Tokens are verified by signature on every node; what happened after a token was issued lives
in two kinds of small etcd keys, written by the metanode *before* it records the change in the
database, each on a lease that ends when the tokens it concerns would have expired anyway (so
etcd holds only revocations of the last ``token_ttl``):

- ``/tessera/auth/token/<token id>`` = user id: this token (= this device's credential) is dead.
- ``/tessera/auth/user/<user id>`` = generation: the user's tokens of an older generation are
  dead (a password change bumps it; deleting the user sets ``USER_DELETED``).

Every node keeps ``Revocations``, an in-memory copy fed by one etcd watch, and checks it in the
auth interceptor: no per-request etcd or database traffic. When the watch reports a revocation,
the calls still open for that user (``Sync.Subscribe`` streams above all) are ended at once.

Losing etcd fails closed: once the view has not been confirmed current for ``stale_after``
seconds, user calls get UNAVAILABLE until it is again (node-to-node calls go on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import aetcd

from tessera.auth import Principal
from tessera.retry import ETCD_WATCH

log = logging.getLogger(__name__)

PREFIX = b"/tessera/auth/"
TOKEN_PREFIX = PREFIX + b"token/"
USER_PREFIX = PREFIX + b"user/"
USER_DELETED = 2**62  # a generation no token carries
SLACK = 600  # seconds a revocation key outlives the tokens it names (clock skew between nodes)
STALE_AFTER = 10.0  # seconds without a confirmed-current view before user calls are refused
PROBE_INTERVAL = 2.0


class RevokedError(Exception):
    """The credential was revoked; the message says how."""


class StaleError(Exception):
    """This node cannot confirm that a credential is still valid (etcd unreachable)."""


# -- writing (the metanode) ----------------------------------------------------------------------
async def _put_until(client: aetcd.Client, key: bytes, value: bytes, until: float) -> None:
    lease = await client.lease(max(60, int(until - time.time()) + SLACK))
    await client.put(key, value, lease=lease)


async def publish_token(client: aetcd.Client, token_id: str, user_id: str, expires_at: int) -> None:
    """Revoke one token (a device's credential) everywhere."""
    await _put_until(client, TOKEN_PREFIX + token_id.encode(), user_id.encode(), expires_at)


async def publish_generation(
    client: aetcd.Client, user_id: str, generation: int, token_ttl: int
) -> None:
    """Revoke every token of ``user_id`` older than ``generation`` everywhere."""
    await _put_until(
        client, USER_PREFIX + user_id.encode(), str(generation).encode(), time.time() + token_ttl
    )


# -- reading (every node) ------------------------------------------------------------------------
@dataclass(eq=False)
class OpenCall:
    """A call in flight under a user's credential; ended if that credential is revoked."""

    principal: Principal
    revoked: str = ""  # why, once revoked
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # set once revoked


@dataclass
class _State:
    tokens: dict[str, str] = field(default_factory=dict)  # token id -> user id
    generations: dict[str, int] = field(default_factory=dict)  # user id -> minimum generation


class Revocations:
    """The node's view of revocations, kept current by an etcd watch.

    Args:
        stale_after: seconds the view may go unconfirmed before user calls are refused.
        probe_interval: seconds between the cheap etcd reads that confirm the view is current.
    """

    def __init__(
        self, *, stale_after: float = STALE_AFTER, probe_interval: float = PROBE_INTERVAL
    ) -> None:
        self._state = _State()
        self._stale_after = stale_after
        self._probe_interval = probe_interval
        self._client: aetcd.Client | None = None
        self._revision = 0
        self._watching = False
        self._confirmed = float("-inf")  # monotonic time the view was last known current
        self._tasks: list[asyncio.Task[None]] = []
        self._open: dict[str, set[OpenCall]] = defaultdict(set)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, client: aetcd.Client) -> None:
        """Read the current revocations, then follow them."""
        self._client = client
        await self._reload()
        self._confirmed = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._watch(), name="revocation-watch"),
            asyncio.create_task(self._probe(), name="revocation-probe"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _reload(self) -> None:
        assert self._client is not None
        result = await self._client.get_prefix(PREFIX)
        state = _State()
        for kv in result:
            self._apply(state, kv.key, kv.value)
        self._state, self._revision = state, result.header.revision
        self._revoked(set(self._open))

    @staticmethod
    def _apply(state: _State, key: bytes, value: bytes | None) -> str:
        """Apply one key (``value`` None: deleted); returns the user it concerns."""
        if key.startswith(TOKEN_PREFIX):
            token_id = key[len(TOKEN_PREFIX) :].decode(errors="replace")
            if value is None:
                return state.tokens.pop(token_id, "")
            state.tokens[token_id] = value.decode(errors="replace")
            return state.tokens[token_id]
        if key.startswith(USER_PREFIX):
            user_id = key[len(USER_PREFIX) :].decode(errors="replace")
            if value is None:
                state.generations.pop(user_id, None)
                return ""
            with contextlib.suppress(ValueError):
                state.generations[user_id] = int(value)
            return user_id
        return ""

    async def _watch(self) -> None:
        assert self._client is not None
        failures = 0
        while True:
            try:
                events = await self._client.watch_prefix(PREFIX, start_revision=self._revision + 1)
                self._watching, failures = True, 0
                async for event in events:
                    user = self._apply(
                        self._state,
                        event.kv.key,
                        None if event.kind == "DELETE" else event.kv.value,
                    )
                    self._revision = max(self._revision, event.kv.mod_revision)
                    if user and event.kind != "DELETE":
                        self._revoked({user})
                raise ConnectionError("watch ended")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - aetcd's many errors: etcd away
                if self._watching:
                    log.warning("revocation watch failed (%s); re-reading until etcd answers", e)
                self._watching = False
                await asyncio.sleep(ETCD_WATCH.delay(failures))
                failures += 1
                with contextlib.suppress(Exception):
                    await self._reload()

    async def _probe(self) -> None:
        assert self._client is not None
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                async with asyncio.timeout(self._probe_interval * 2):
                    await self._client.get(PREFIX)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                if time.monotonic() - self._confirmed < self._stale_after:
                    log.warning("etcd probe failed (%s); revocations unconfirmed", e)
                continue
            if self._watching:
                if time.monotonic() - self._confirmed > self._stale_after:
                    log.warning("etcd answers again: revocations confirmed")
                self._confirmed = time.monotonic()

    # -- checking --------------------------------------------------------------------------------
    def reason(self, principal: Principal) -> str:
        """Why ``principal`` is refused ("" if it is not)."""
        if principal.is_node:
            return ""
        if self._state.tokens.get(principal.token_id) == principal.user_id:
            return "this device was logged out or revoked"
        minimum = self._state.generations.get(principal.user_id, 0)
        if minimum >= USER_DELETED:
            return "this user was deleted"
        if principal.generation < minimum:
            return "the password was changed"
        return ""

    def check(self, principal: Principal) -> None:
        """Raise RevokedError or StaleError unless ``principal`` may call now."""
        if principal.is_node:
            return
        why = self.reason(principal)
        if why:
            raise RevokedError(why)
        unconfirmed = time.monotonic() - self._confirmed
        if self._client is None:
            raise StaleError("this node is starting: it cannot confirm credentials yet")
        if unconfirmed > self._stale_after:
            raise StaleError(
                f"cannot confirm credentials: etcd unreachable for {unconfirmed:.0f} s"
            )

    @contextlib.contextmanager
    def track(self, principal: Principal) -> Iterator[OpenCall]:
        """Register a call of ``principal`` for the duration; ``ended`` is set if it is revoked."""
        call = OpenCall(principal)
        if principal.is_node:
            yield call
            return
        calls = self._open[principal.user_id]
        calls.add(call)
        try:
            yield call
        finally:
            calls.discard(call)
            if not calls:
                self._open.pop(principal.user_id, None)

    def _revoked(self, users: set[str]) -> None:
        """End the open calls of ``users`` whose credential is no longer valid."""
        for user in users:
            for call in list(self._open.get(user, ())):
                why = self.reason(call.principal)
                if why and not call.revoked:
                    call.revoked = why
                    call.ended.set()
