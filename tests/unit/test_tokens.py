"""The access-token signer: what it issues, what it refuses, and when a correctly signed token is revoked."""

from __future__ import annotations

import base64
import json

import pytest

from stacklab.errors import TokenError
from stacklab.web.tokens import Claims, TokenSigner, allows


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def body_of(claims: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


def test_a_token_carries_its_claims_until_it_expires() -> None:
    clock = Clock()
    signer = TokenSigner("key", clock)
    token = signer.issue("learner", "ann", "0000abcd", 60, read_only=True, generation=3)
    assert signer.verify(token) == Claims("learner", "ann", "0000abcd", clock.now + 60, True, 3)
    assert signer.expiry(60) == clock.now + 60
    clock.now += 61
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token)


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (None, "missing"),
        ("", "missing"),
        ("no-dot", "malformed"),
        ("a.b.c", "malformed"),
        ("t\u00f6ken.sig", "not ASCII"),
        ("a" * 3000 + ".b", "too long"),
    ],
)
def test_malformed_tokens_are_refused_with_a_reason(token: str | None, problem: str) -> None:
    with pytest.raises(TokenError, match=problem):
        TokenSigner("key").verify(token)


def test_a_token_signed_with_another_key_or_altered_is_refused() -> None:
    signer = TokenSigner("key")
    token = signer.issue("learner", "ann", "0000abcd", 60)
    with pytest.raises(TokenError, match="signature"):
        TokenSigner("other-key").verify(token)
    admin = signer.issue("admin", "ann", None, 60).split(".")[0]
    with pytest.raises(TokenError, match="signature"):
        signer.verify(f"{admin}.{token.split('.')[1]}")


@pytest.mark.parametrize(
    "claims",
    [
        ["not", "a", "dict"],
        {"r": "root", "s": "x", "e": None, "x": 2e9},
        {"r": "admin", "s": "x", "e": None},
        {"r": "admin", "s": "x", "e": None, "x": "NaN"},
        {"r": "admin", "s": "x", "e": None, "x": 2e9, "g": "many"},
    ],
)
def test_correctly_signed_nonsense_is_malformed(claims: object) -> None:
    signer = TokenSigner("key")
    body = body_of(claims)
    with pytest.raises(TokenError, match="malformed"):
        signer.verify(f"{body}.{signer._sign(body)}")


def test_the_revocation_check_decides_for_environment_tokens_only() -> None:
    seen: list[Claims] = []

    def revoked(claims: Claims) -> str | None:
        seen.append(claims)
        return "the lab was deleted" if claims.generation < 2 else None

    signer = TokenSigner("key", revoked=revoked)
    with pytest.raises(TokenError, match="revoked: the lab was deleted"):
        signer.verify(signer.issue("learner", "ann", "0000abcd", 60, generation=1))
    assert signer.verify(signer.issue("learner", "ann", "0000abcd", 60, generation=2)).generation == 2
    assert signer.verify(signer.issue("admin", "op", None, 60)).role == "admin"
    assert [c.generation for c in seen] == [1, 2]  # the admin token was not looked up


def test_tokens_of_the_first_format_read_as_generation_zero() -> None:
    signer = TokenSigner("key")
    body = body_of({"r": "learner", "s": "ann", "e": "0000abcd", "x": 2e9, "ro": False})
    assert signer.verify(f"{body}.{signer._sign(body)}").generation == 0


def test_who_may_do_what() -> None:
    learner = Claims("learner", "ann", "0000abcd", 0)
    watcher = Claims("learner", "staff-view.ann", "0000abcd", 0, read_only=True)
    staff = Claims("staff", "bob", None, 0)
    admin = Claims("admin", "op", None, 0)
    assert allows(learner, "0000abcd", write=True) and not allows(learner, "1111abcd")
    assert allows(watcher, "0000abcd") and not allows(watcher, "0000abcd", write=True)
    assert allows(staff, "1111abcd") and not allows(staff, "1111abcd", write=True)
    assert allows(admin, "1111abcd", write=True)
