"""The access-token signer: standard JWTs, what it refuses, and when a correctly signed token is revoked."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from stacklab.config import LmsKey
from stacklab.errors import TokenError
from stacklab.web.lms import verify_lms_token
from stacklab.web.tokens import AUDIENCE, ISSUER, Claims, TokenSigner, allows, is_access_token

LMS_SECRET = "the-lms-shared-secret-of-32-bytes-or-more"
LMS_KEYS = {"edx": LmsKey(LMS_SECRET, ("*",)), ISSUER: LmsKey(LMS_SECRET, ("*",))}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signed(signer: TokenSigner, claims: dict[str, Any]) -> str:
    """A token with these claims, signed with the signer's own key."""
    return jwt.encode(claims, signer._key, algorithm="HS256")


def valid_claims(**changes: object) -> dict[str, Any]:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ann", "role": "learner", "env": "0000abcd", "exp": 2e9}
    return {**claims, **changes}


def lms_jwt(**changes: object) -> str:
    claims = {"iss": "edx", "exp": time.time() + 60, "jti": "j1", **changes}
    return jwt.encode(claims, LMS_SECRET, algorithm="HS256")


def test_a_token_is_a_standard_jwt_carrying_its_claims_until_it_expires() -> None:
    clock = Clock()
    signer = TokenSigner("key", clock)
    token = signer.issue("learner", "ann", "0000abcd", 60, read_only=True, generation=3)
    assert signer.verify(token) == Claims("learner", "ann", "0000abcd", clock.now + 60, True, 3)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    public = jwt.decode(token, options={"verify_signature": False})
    assert public == {
        "iss": "stacklab",
        "aud": "stacklab-access",
        "sub": "ann",
        "role": "learner",
        "env": "0000abcd",
        "read_only": True,
        "gen": 3,
        "exp": clock.now + 60,
    }
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
        ("t\u00f6ken.a.sig", "not ASCII"),
        ("a" * 3000 + ".b.c", "too long"),
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
    header, _body, signature = token.split(".")
    admin_body = signer.issue("admin", "ann", None, 60).split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        signer.verify(f"{header}.{admin_body}.{signature}")


def test_an_unsigned_or_differently_signed_jwt_is_refused() -> None:
    signer = TokenSigner("key")
    with pytest.raises(TokenError, match="malformed"):
        signer.verify(jwt.encode(valid_claims(), None, algorithm="none"))
    with pytest.raises(TokenError, match="malformed"):
        signer.verify(jwt.encode(valid_claims(), signer._key * 2, algorithm="HS512"))


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        (valid_claims(aud="another-service"), "audience"),
        ({k: v for k, v in valid_claims().items() if k != "aud"}, "'aud'"),
        (valid_claims(iss="edx"), "issuer"),
        ({k: v for k, v in valid_claims().items() if k != "exp"}, "'exp'"),
    ],
)
def test_the_wrong_audience_or_issuer_is_refused(claims: dict[str, Any], problem: str) -> None:
    signer = TokenSigner("key")
    with pytest.raises(TokenError, match=problem):
        signer.verify(signed(signer, claims))


@pytest.mark.parametrize(
    "claims",
    [
        valid_claims(role="root"),
        valid_claims(sub=7),
        valid_claims(env=["0000abcd"]),
        valid_claims(read_only="yes"),
        valid_claims(gen="many"),
        valid_claims(gen=True),
        valid_claims(exp="NaN"),
    ],
)
def test_correctly_signed_nonsense_is_malformed(claims: dict[str, Any]) -> None:
    signer = TokenSigner("key")
    with pytest.raises(TokenError, match="malformed"):
        signer.verify(signed(signer, claims))


def test_an_lms_jwt_is_no_access_token_and_an_access_token_no_lms_call() -> None:
    signer = TokenSigner(LMS_SECRET)
    lms = lms_jwt(sub="ann", role="admin")
    assert not is_access_token(lms)
    with pytest.raises(TokenError):
        signer.verify(lms)
    # Even signed with the very key the signer uses, an LMS-shaped token is refused: wrong issuer/audience.
    with pytest.raises(TokenError, match="not a stacklab access token"):
        signer.verify(signed(signer, {"iss": "edx", "sub": "ann", "role": "admin", "exp": 2e9}))
    ours = signer.issue("admin", "op", None, 60)
    assert is_access_token(ours) and verify_lms_token(lms_jwt(), LMS_KEYS)["iss"] == "edx"
    # An LMS key named like our issuer, with the same secret, still does not make our token an LMS call.
    with pytest.raises(ValueError, match="unknown issuer"):
        verify_lms_token(ours, LMS_KEYS)
    with pytest.raises(ValueError, match="invalid token"):
        verify_lms_token(
            jwt.encode({**valid_claims(iss="edx", exp=time.time() + 60), "jti": "j2"}, LMS_SECRET), LMS_KEYS
        )


def test_read_only_tokens_watch_and_never_write() -> None:
    signer = TokenSigner("key")
    watcher = signer.verify(signer.issue("learner", "staff-view.ann", "0000abcd", 60, read_only=True))
    assert watcher.read_only
    assert allows(watcher, "0000abcd") and not allows(watcher, "0000abcd", write=True)


def test_the_revocation_check_is_asked_about_every_token() -> None:
    seen: list[Claims] = []

    def revoked(claims: Claims) -> str | None:
        seen.append(claims)
        if claims.env_id is not None and claims.generation < 2:
            return "the lab was deleted"
        return "operator 'gone' no longer exists" if claims.subject == "gone" else None

    signer = TokenSigner("key", revoked=revoked)
    with pytest.raises(TokenError, match="revoked: the lab was deleted"):
        signer.verify(signer.issue("learner", "ann", "0000abcd", 60, generation=1))
    assert signer.verify(signer.issue("learner", "ann", "0000abcd", 60, generation=2)).generation == 2
    assert signer.verify(signer.issue("admin", "op", None, 60, generation=4)).generation == 4
    with pytest.raises(TokenError, match="revoked: operator 'gone'"):
        signer.verify(signer.issue("admin", "gone", None, 60))
    assert [(c.subject, c.generation) for c in seen] == [("ann", 1), ("ann", 2), ("op", 4), ("gone", 0)]


def test_tokens_of_the_home_made_format_are_refused() -> None:
    body = base64.urlsafe_b64encode(json.dumps({"r": "admin", "s": "x", "e": None, "x": 2e9}).encode())
    with pytest.raises(TokenError, match="malformed"):
        TokenSigner("key").verify(body.rstrip(b"=").decode() + ".c2lnbmF0dXJl")


def test_who_may_do_what() -> None:
    learner = Claims("learner", "ann", "0000abcd", 0)
    watcher = Claims("learner", "staff-view.ann", "0000abcd", 0, read_only=True)
    staff = Claims("staff", "bob", None, 0)
    admin = Claims("admin", "op", None, 0)
    assert allows(learner, "0000abcd", write=True) and not allows(learner, "1111abcd")
    assert allows(watcher, "0000abcd") and not allows(watcher, "0000abcd", write=True)
    assert allows(staff, "1111abcd") and not allows(staff, "1111abcd", write=True)
    assert allows(admin, "1111abcd", write=True)
