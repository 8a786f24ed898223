"""Server-to-server authentication: JWTs (HS256) signed with a per-LMS shared secret, bound to courses.

Each LMS key names the courses it may act for (the `lms_keys` setting); a call for any other course is
refused (403) naming the course. Every JWT carries a `jti` that is remembered in the database until the
token expires, so a captured token cannot be replayed, by this process or another.

The service's own access tokens are JWTs too (web/tokens.py): which verifier a bearer token goes to is
decided by its claims (our issuer and audience), and each verifier refuses the other's tokens, so a learner
token can never pass for an LMS call nor an LMS JWT for a learner or operator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import HTTPException, Request

from stacklab.config import LmsKey
from stacklab.errors import TokenError
from stacklab.store.revocations import remember_jti
from stacklab.web.context import bearer, context
from stacklab.web.tokens import ISSUER, Claims, is_access_token

MAX_LIFETIME_S = 300
LEEWAY_S = 30
MAX_JTI_CHARS = 200


@dataclass(frozen=True)
class Caller:
    """Who calls a server API: an LMS key (limited to its courses) or an operator (any course)."""

    name: str
    lms_key: LmsKey | None = None
    operator: str | None = None
    """The operator account, when an operator (not an LMS) calls: their actions go to the audit log."""

    def require_course(self, course: str) -> None:
        """403 naming the course when this LMS key may not act for it."""
        if self.lms_key is not None and not self.lms_key.allows(course):
            raise HTTPException(
                status_code=403, detail=f"{self.name} may not act for course {course!r} (see lms_keys)"
            )


def verify_lms_token(token: str, keys: dict[str, LmsKey], now: float | None = None) -> dict[str, Any]:
    """The claims of a valid token (`iss` names the LMS key); ValueError names what is wrong."""
    if not token.isascii():
        raise ValueError("malformed token: not ASCII")
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except (jwt.PyJWTError, UnicodeError) as exc:
        raise ValueError("malformed token") from exc
    key = keys.get(str(issuer))
    if key is None or issuer == ISSUER:  # ours are never LMS calls, whatever lms_keys holds
        raise ValueError("unknown issuer")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.secret,
            algorithms=["HS256"],
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iss", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise ValueError(f"invalid token: {exc}") from exc
    if claims["exp"] - (now or time.time()) > MAX_LIFETIME_S + LEEWAY_S:
        raise ValueError(f"token lives longer than {MAX_LIFETIME_S}s")
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= MAX_JTI_CHARS:
        raise ValueError(f"invalid token: jti must be a string of 1-{MAX_JTI_CHARS} characters")
    return claims


def _lms_caller(request: Request, token: str) -> Caller:
    ctx = context(request)
    keys = ctx.lms_keys
    try:
        claims = verify_lms_token(token, keys)
    except ValueError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    issuer = str(claims["iss"])
    expires_at = float(claims["exp"]) + LEEWAY_S
    if not remember_jti(ctx.stack.repo, issuer, claims["jti"], expires_at, time.time()):
        raise HTTPException(status_code=401, detail="token replayed: this jti was used before")
    return Caller(f"LMS key {issuer!r}", keys[issuer])


def require_server(request: Request) -> Caller:
    """Dependency: an LMS's signed JWT, or an operator (admin) token. Returns who is calling."""
    token = bearer(request)
    if not token:
        raise HTTPException(status_code=401, detail="missing token")
    if not is_access_token(token):
        return _lms_caller(request, token)
    operator = _operator(request, "this call is for LMS servers and operators").subject
    return Caller(f"operator {operator!r}", operator=operator)


def operator_claims(request: Request) -> Claims:
    """Dependency: the claims of an operator token (of an account that still exists)."""
    return _operator(request, "operators only")


def require_admin(request: Request) -> str:
    """Dependency: an operator token (of an account that still exists). Returns the operator's name."""
    return _operator(request, "operators only").subject


def _operator(request: Request, refusal: str) -> Claims:
    try:
        claims = context(request).signer.verify(bearer(request))
    except TokenError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    if claims.role != "admin":
        raise HTTPException(status_code=403, detail=refusal)
    return claims
