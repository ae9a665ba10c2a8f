"""Browser sessions of the web gateway: an SDK client per logged-in user, CSRF tokens.

A session lives in this process (sessions are not shared between gateway replicas: the k8s
Deployment runs one, or needs sticky sessions). Its id travels in an HttpOnly, SameSite=Lax
cookie (a link from elsewhere still opens the page logged in; no other site can post with
it); every form carries the session's CSRF token, checked in constant time. Logging in
starts a fresh session (no fixation). Sessions idle for ``IDLE`` go, and at most
``MAX_SESSIONS`` are kept (the least recently used go first).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from client import Client

COOKIE = "tessera_session"
IDLE = 12 * 3600
MAX_SESSIONS = 10_000


@dataclass
class Session:
    sid: str
    csrf: str
    client: Client | None = None
    user: str = ""
    link_passwords: dict[str, str] = field(default_factory=dict)  # link token -> password
    used: float = field(default_factory=time.monotonic)


class Sessions:
    """The gateway's sessions by id."""

    def __init__(self, *, secure_cookies: bool = False) -> None:
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self.secure_cookies = secure_cookies

    def get(self, request: Request) -> Session | None:
        sid = request.cookies.get(COOKIE, "")
        s = self._by_id.get(sid)
        if s is None:
            return None
        if time.monotonic() - s.used > IDLE:
            self._by_id.pop(sid, None)
            return None
        s.used = time.monotonic()
        self._by_id.move_to_end(sid)
        return s

    def new(self) -> Session:
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
        self._by_id[s.sid] = s
        while len(self._by_id) > MAX_SESSIONS:
            _, old = self._by_id.popitem(last=False)
            if old.client is not None:
                # closed lazily: the event loop may be mid-request on it
                old.client = None
        return s

    async def drop(self, s: Session) -> None:
        self._by_id.pop(s.sid, None)
        if s.client is not None:
            await s.client.close()

    async def close(self) -> None:
        for s in list(self._by_id.values()):
            await self.drop(s)

    def set_cookie(self, response: Response, s: Session) -> None:
        response.set_cookie(
            COOKIE,
            s.sid,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies,
            path="/",
            max_age=IDLE,
        )


def csrf_ok(s: Session | None, given: str) -> bool:
    """True when ``given`` is this session's CSRF token."""
    return s is not None and bool(given) and hmac.compare_digest(s.csrf, given)
