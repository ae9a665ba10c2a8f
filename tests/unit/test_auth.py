"""Tokens, receipts and tickets: forged, expired or misused credentials are refused."""

import base64
import time

import pytest

from tessera.auth import AuthError, Signer

A = Signer("cluster-secret-aaaaaaaaaaaaaaaa")
B = Signer("cluster-secret-bbbbbbbbbbbbbbbb")
H = bytes(range(32))


def test_token_round_trip() -> None:
    token, principal = A.issue_token("user-1", ttl=60, is_admin=True)
    got = A.verify_token(token)
    assert got == principal
    assert got.user_id == "user-1" and got.is_admin and not got.is_node


def test_token_from_other_cluster_is_refused() -> None:
    token, _ = B.issue_token("user-1", ttl=60)
    with pytest.raises(AuthError, match="signature"):
        A.verify_token(token)


def test_expired_token_is_refused() -> None:
    token, _ = A.issue_token("user-1", ttl=10)
    with pytest.raises(AuthError, match="expired"):
        A.verify_token(token, now=time.time() + 11)


@pytest.mark.parametrize("token", ["", "abc", "tsr1.x.y", "tsr1..", "Bearer x"])
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(AuthError):
        A.verify_token(token)


def test_tampered_claims_are_refused() -> None:
    token, _ = A.issue_token("user-1", ttl=60)
    prefix, payload, sig = token.split(".")
    other_payload = A.issue_token("admin", ttl=60, is_admin=True)[0].split(".")[1]
    with pytest.raises(AuthError):
        A.verify_token(f"{prefix}.{other_payload}.{sig}")


def test_node_token() -> None:
    p = A.verify_token(A.node_token("block-1"))
    assert p.is_node and p.user_id == ""


def test_receipt_binds_user_chunk_and_size() -> None:
    exp, sig = A.sign_receipt(H, 100, "u1", ttl=60)
    assert A.check_receipt(H, 100, "u1", exp, sig)
    assert not A.check_receipt(H, 100, "u2", exp, sig)
    assert not A.check_receipt(H, 101, "u1", exp, sig)
    assert not A.check_receipt(bytes(32), 100, "u1", exp, sig)
    assert not B.check_receipt(H, 100, "u1", exp, sig)


def test_ticket_binds_user_and_hashes_and_expires() -> None:
    hashes = [H, bytes(32)]
    exp, sig = A.sign_ticket("u1", hashes, ttl=60)
    assert A.check_ticket("u1", hashes, exp, sig)
    assert not A.check_ticket("u2", hashes, exp, sig)
    assert not A.check_ticket("u1", hashes[:1], exp, sig)
    assert not A.check_ticket("u1", hashes, exp - 120, sig)


def test_receipt_cannot_serve_as_ticket() -> None:
    exp, sig = A.sign_receipt(H, 100, "u1", ttl=60)
    assert not A.check_ticket("u1", [H], exp, sig)


def test_token_carries_device_and_generation() -> None:
    token, issued = A.issue_token("u1", ttl=60, token_id="device-1", generation=3)
    p = A.verify_token(token)
    assert (p.token_id, p.generation) == ("device-1", 3) and p == issued
    legacy, _ = A.issue_token("u1", ttl=60)  # generation 0: no claim, as tokens before it
    assert A.verify_token(legacy).generation == 0
    assert '"gen"' not in base64.urlsafe_b64decode(legacy.split(".")[1] + "==").decode()
