"""Short-lived signed access tokens, bound to a role, a subject and (for learners) one environment.

Format: base64url(JSON claims) "." base64url(HMAC-SHA256). The signing key is derived from the service's
secret key, so rotating that key invalidates every token. Claims are public (not encrypted): never put a
secret in them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Literal

from stacklab.errors import TokenError

Role = Literal["learner", "staff", "admin"]


@dataclass(frozen=True)
class Claims:
    role: Role
    subject: str
    env_id: str | None
    expires_at: float
    read_only: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret_key: str, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self._key = hashlib.sha256(b"stacklab-access-tokens\0" + secret_key.encode()).digest()
        self._clock = clock

    def issue(
        self, role: Role, subject: str, env_id: str | None, ttl_s: float, read_only: bool = False
    ) -> str:
        claims = {"r": role, "s": subject, "e": env_id, "x": round(self._clock() + ttl_s, 3), "ro": read_only}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str | None) -> Claims:
        if not token or token.count(".") != 1:
            raise TokenError("missing or malformed token")
        body, signature = token.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            raise TokenError("invalid token signature")
        try:
            raw = json.loads(_unb64(body))
            claims = Claims(raw["r"], raw["s"], raw["e"], float(raw["x"]), bool(raw.get("ro", False)))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError("malformed token") from exc
        if claims.expires_at < self._clock():
            raise TokenError("token expired")
        return claims

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


def allows(claims: Claims, env_id: str, *, write: bool = False) -> bool:
    """Learners reach only their own environment; staff read any; admins do anything."""
    if claims.role == "admin":
        return True
    if claims.role == "staff":
        return not write
    return claims.env_id == env_id and not (write and claims.read_only)
