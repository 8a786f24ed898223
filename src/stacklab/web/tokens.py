"""Short-lived access tokens: standard JWTs (HS256), bound to a role, a subject and (for learners) one lab.

One format to audit: the service's own tokens are JWTs like the ones an LMS signs for its calls, told apart
by their claims, never by their shape. Ours carry `iss` = "stacklab" and `aud` = "stacklab-access"; an LMS
JWT names its LMS key in `iss` and never carries our audience, so each verifier refuses the other's tokens
(web/lms.py). The signing key is derived from the service's secret key, so rotating that key invalidates
every token. Claims are public (signed, not encrypted): never put a secret in them.

Claims: `sub` (learner, or operator account), `role` (learner, staff, admin), `env` (the environment a
learner token opens, absent otherwise), `course` (the course a staff token shows, web/course_view.py),
`read_only`, `gen` (a token generation), `exp` (epoch seconds).

A signature only proves who issued a token, not that it still should work. An environment-bound token
carries the environment's token generation when it was issued; deleting or resetting the environment, or
the LMS revoking its learner, moves that generation on. An operator token carries its account's generation;
removing the account (or changing its password) moves it on. `revoked` (a check the service plugs in,
reading the store) refuses every token of an older generation, in every process.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from stacklab.errors import TokenError

Role = Literal["learner", "staff", "admin"]
ROLES = ("learner", "staff", "admin")
ISSUER = "stacklab"
AUDIENCE = "stacklab-access"
ALGORITHM = "HS256"
MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True)
class Claims:
    role: Role
    subject: str
    env_id: str | None
    expires_at: float
    read_only: bool = False
    generation: int = 0
    """The token generation when the token was issued: the environment's (learner tokens) or the operator
    account's (admin tokens)."""
    course: str | None = None
    """The course whose class a staff token shows (issued for the LMS's course staff)."""


RevocationCheck = Callable[[Claims], str | None]
"""Why a correctly signed token no longer works (deleted environment, revoked learner, removed operator)."""


def unverified_claims(token: str | None) -> dict[str, Any]:
    """A JWT's claims without checking anything (to route it to its verifier); {} when it is not a JWT."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return {}
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, UnicodeError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def is_access_token(token: str | None) -> bool:
    """Whether a token claims to be one of ours (our issuer and audience), as opposed to an LMS's JWT."""
    claims = unverified_claims(token)
    return claims.get("iss") == ISSUER and claims.get("aud") == AUDIENCE


def _parse(raw: dict[str, Any]) -> Claims:
    """Typed claims, or TokenError("malformed ...") for a correctly signed token with nonsense in it."""
    role, subject, env_id = raw.get("role"), raw.get("sub"), raw.get("env")
    read_only, generation, expires_at = raw.get("read_only", False), raw.get("gen", 0), raw.get("exp")
    course = raw.get("course")
    if role not in ROLES or not isinstance(subject, str) or not (env_id is None or isinstance(env_id, str)):
        raise TokenError("malformed token: role, sub or env")
    if not (course is None or isinstance(course, str)):
        raise TokenError("malformed token: course")
    if not isinstance(read_only, bool) or type(generation) is not int:
        raise TokenError("malformed token: read_only or gen")
    if type(expires_at) not in (int, float) or not math.isfinite(expires_at):
        raise TokenError("malformed token: exp")
    return Claims(role, subject, env_id, float(expires_at), read_only, generation, course)


def _decode(token: str, key: bytes) -> dict[str, Any]:
    """Signature, algorithm, issuer and audience checked by PyJWT; expiry is ours (the signer's clock)."""
    try:
        return jwt.decode(  # type: ignore[no-any-return]
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iss", "aud", "sub"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise TokenError("invalid token signature") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenError("wrong token audience: not a stacklab access token") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenError("wrong token issuer: not a stacklab access token") from exc
    except jwt.MissingRequiredClaimError as exc:
        if exc.claim in ("iss", "aud"):
            raise TokenError(f"not a stacklab access token: no {exc.claim!r} claim") from exc
        raise TokenError(f"malformed token: no {exc.claim!r} claim") from exc
    except (jwt.PyJWTError, UnicodeError, ValueError) as exc:
        raise TokenError("malformed token") from exc


class TokenSigner:
    def __init__(
        self,
        secret_key: str,
        clock: Callable[[], float] = time.time,
        revoked: RevocationCheck | None = None,
    ) -> None:
        self._key = hashlib.sha256(b"stacklab-access-tokens\0" + secret_key.encode()).digest()
        self._clock = clock
        self._revoked = revoked

    def issue(
        self,
        role: Role,
        subject: str,
        env_id: str | None,
        ttl_s: float,
        read_only: bool = False,
        generation: int = 0,
        course: str | None = None,
    ) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "role": role,
            "exp": self.expiry(ttl_s),
            "read_only": read_only,
            "gen": generation,
        }
        if env_id is not None:
            claims["env"] = env_id
        if course is not None:
            claims["course"] = course
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def expiry(self, ttl_s: float) -> float:
        """When a token issued now with this lifetime expires (epoch seconds, its `exp` claim)."""
        return round(self._clock() + ttl_s, 3)

    def verify(self, token: str | None) -> Claims:
        if not token:
            raise TokenError("missing token")
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise TokenError("malformed token: too long or not ASCII")
        claims = _parse(_decode(token, self._key))
        if claims.expires_at < self._clock():
            raise TokenError("token expired")
        reason = self._revoked(claims) if self._revoked else None
        if reason:
            raise TokenError(f"token revoked: {reason}")
        return claims


def allows(claims: Claims, env_id: str, *, write: bool = False) -> bool:
    """Learners reach only their own environment; staff read any (a course's staff token none: it opens its
    course's class, and learners' labs through read-only tokens of their own); admins do anything."""
    if claims.role == "admin":
        return True
    if claims.role == "staff":
        return not write and claims.course is None
    return claims.env_id == env_id and not (write and claims.read_only)
