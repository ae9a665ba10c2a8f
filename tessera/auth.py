"""Signed credentials: bearer tokens, chunk receipts and read tickets.

All three are HMAC-SHA256 over a canonical encoding, each with its own key derived from the
cluster secret, so a receipt can never be replayed as a ticket or a token. Verification here is
stateless; every node also checks the revocation feed (``tessera.revocation``), and the
metanode the database, so a revoked token dies everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

TOKEN_PREFIX = "tsr1"
NODE_SUBJECT_PREFIX = "node:"


class AuthError(Exception):
    """A credential that is missing, malformed, forged or expired."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (with token id) or a node of the cluster."""

    subject: str
    token_id: str
    expires_at: int
    is_admin: bool = False
    generation: int = 0  # the user's token generation when issued (a password change bumps it)

    @property
    def is_node(self) -> bool:
        """True for node-to-node credentials."""
        return self.subject.startswith(NODE_SUBJECT_PREFIX)

    @property
    def user_id(self) -> str:
        """The user id (empty for a node)."""
        return "" if self.is_node else self.subject


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and verifies every credential kind with keys derived from the cluster secret."""

    def __init__(self, cluster_secret: str) -> None:
        root = cluster_secret.encode()
        self._token_key = hmac.new(root, b"tessera/token/v1", hashlib.sha256).digest()
        self._receipt_key = hmac.new(root, b"tessera/receipt/v1", hashlib.sha256).digest()
        self._ticket_key = hmac.new(root, b"tessera/ticket/v1", hashlib.sha256).digest()

    # -- tokens -----------------------------------------------------------------------------
    def issue_token(
        self,
        subject: str,
        *,
        ttl: int,
        is_admin: bool = False,
        token_id: str | None = None,
        generation: int = 0,
    ) -> tuple[str, Principal]:
        """A bearer token for ``subject`` valid for ``ttl`` seconds."""
        principal = Principal(
            subject, token_id or str(uuid.uuid4()), int(time.time()) + ttl, is_admin, generation
        )
        claims: dict[str, object] = {
            "sub": principal.subject,
            "jti": principal.token_id,
            "exp": principal.expires_at,
            "adm": is_admin,
        }
        if generation:
            claims["gen"] = generation
        payload = json.dumps(
            claims,
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        sig = hmac.new(self._token_key, payload, hashlib.sha256).digest()
        return f"{TOKEN_PREFIX}.{_b64(payload)}.{_b64(sig)}", principal

    def node_token(self, node_id: str, ttl: int = 10 * 365 * 86400) -> str:
        """Credentials one node presents to another."""
        return self.issue_token(NODE_SUBJECT_PREFIX + node_id, ttl=ttl, token_id="node")[0]

    def verify_token(self, token: str, *, now: float | None = None) -> Principal:
        """Check signature and expiry; raise AuthError otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise AuthError("malformed token")
        try:
            payload, sig = _unb64(parts[1]), _unb64(parts[2])
        except (ValueError, TypeError):
            raise AuthError("malformed token") from None
        if not hmac.compare_digest(
            sig, hmac.new(self._token_key, payload, hashlib.sha256).digest()
        ):
            raise AuthError("invalid token signature")
        try:
            claims = json.loads(payload)
            principal = Principal(
                str(claims["sub"]),
                str(claims["jti"]),
                int(claims["exp"]),
                bool(claims.get("adm")),
                int(claims.get("gen", 0)),
            )
        except (ValueError, KeyError, TypeError):
            raise AuthError("malformed token") from None
        if principal.expires_at < (time.time() if now is None else now):
            raise AuthError("token expired")
        return principal

    # -- receipts ---------------------------------------------------------------------------
    def _receipt_mac(self, chunk_hash: bytes, size: int, user_id: str, expires_at: int) -> bytes:
        msg = b"|".join(
            [chunk_hash, str(size).encode(), user_id.encode(), str(expires_at).encode()]
        )
        return hmac.new(self._receipt_key, msg, hashlib.sha256).digest()

    def sign_receipt(
        self, chunk_hash: bytes, size: int, user_id: str, ttl: int
    ) -> tuple[int, bytes]:
        """(expires_at, signature) proving ``user_id`` stored this chunk durably."""
        expires_at = int(time.time()) + ttl
        return expires_at, self._receipt_mac(chunk_hash, size, user_id, expires_at)

    def check_receipt(
        self, chunk_hash: bytes, size: int, user_id: str, expires_at: int, signature: bytes
    ) -> bool:
        """True if the receipt is genuine, for this user and chunk, and unexpired."""
        if expires_at < time.time():
            return False
        return hmac.compare_digest(
            signature, self._receipt_mac(chunk_hash, size, user_id, expires_at)
        )

    # -- read tickets -----------------------------------------------------------------------
    def _ticket_mac(self, user_id: str, hashes: Iterable[bytes], expires_at: int) -> bytes:
        digest = hashlib.sha256(b"".join(hashes)).digest()
        msg = b"|".join([user_id.encode(), str(expires_at).encode(), digest])
        return hmac.new(self._ticket_key, msg, hashlib.sha256).digest()

    def sign_ticket(self, user_id: str, hashes: list[bytes], ttl: int) -> tuple[int, bytes]:
        """(expires_at, signature) for a capability to read ``hashes``."""
        expires_at = int(time.time()) + ttl
        return expires_at, self._ticket_mac(user_id, hashes, expires_at)

    def check_ticket(
        self, user_id: str, hashes: list[bytes], expires_at: int, signature: bytes
    ) -> bool:
        """True if the ticket is genuine and unexpired."""
        if expires_at < time.time():
            return False
        return hmac.compare_digest(signature, self._ticket_mac(user_id, hashes, expires_at))
