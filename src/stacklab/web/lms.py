"""Server-to-server authentication: JWTs (HS256) signed with a per-LMS shared secret."""

from __future__ import annotations

import time

import jwt
from fastapi import HTTPException, Request

from stacklab.web.context import bearer, context
from stacklab.errors import TokenError

MAX_LIFETIME_S = 300
LEEWAY_S = 30


def verify_lms_token(token: str, keys: dict[str, str], now: float | None = None) -> str:
    """The LMS key that signed a valid token; ValueError names what is wrong."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError as exc:
        raise ValueError("malformed token") from exc
    secret = keys.get(str(issuer))
    if secret is None:
        raise ValueError("unknown issuer")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise ValueError(f"invalid token: {exc}") from exc
    if claims["exp"] - (now or time.time()) > MAX_LIFETIME_S + LEEWAY_S:
        raise ValueError(f"token lives longer than {MAX_LIFETIME_S}s")
    return str(issuer)


def require_server(request: Request) -> str:
    """Dependency: an LMS's signed JWT, or an operator (admin) token. Returns who is calling."""
    token = bearer(request)
    if not token:
        raise HTTPException(status_code=401, detail="missing token")
    ctx = context(request)
    try:
        claims = ctx.signer.verify(token)
    except TokenError:
        claims = None
    if claims is not None:
        if claims.role != "admin":
            raise HTTPException(status_code=403, detail="this call is for LMS servers and operators")
        return f"admin:{claims.subject}"
    try:
        return "lms:" + verify_lms_token(token, dict(ctx.stack.settings.lms_keys))
    except ValueError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc


def require_admin(request: Request) -> str:
    try:
        claims = context(request).signer.verify(bearer(request))
    except TokenError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    if claims.role != "admin":
        raise HTTPException(status_code=403, detail="operators only")
    return claims.subject
