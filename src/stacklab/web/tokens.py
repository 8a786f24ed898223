"""Short-lived signed access tokens, bound to a role, a subject and (for learners) one environment.

Format: base64url(JSON claims) "." base64url(HMAC-SHA256). The signing key is derived from the service's
secret key, so rotating that key invalidates every token. Claims are public (not encrypted): never put a
secret in them.

A signature only proves who issued a token, not that it still should work: an environment-bound token
also carries the environment's token generation (`g`) at the time it was issued. Deleting or resetting
the environment, or the LMS revoking its learner, moves the generation on, and `revoked` (a check the
service plugs in, reading the store) refuses every token of an older generation, in every process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from stacklab.errors import TokenError

Role = Literal["learner", "staff", "admin"]
MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True)
class Claims:
    role: Role
    subject: str
    env_id: str | None
    expires_at: float
    read_only: bool = False
    generation: int = 0
    """The environment's token generation when the token was issued (learner tokens)."""


RevocationCheck = Callable[[Claims], str | None]
"""Why a correctly signed token no longer works (deleted environment, revoked learner), or None."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parse(raw: object) -> Claims:
    if not isinstance(raw, dict) or raw.get("r") not in ("learner", "staff", "admin"):
        raise TokenError("malformed token")
    expires_at = float(raw["x"])
    if not math.isfinite(expires_at):
        raise TokenError("malformed token")
    return Claims(
        raw["r"], str(raw["s"]), raw["e"], expires_at, bool(raw.get("ro", False)), int(raw.get("g", 0))
    )


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
    ) -> str:
        claims = {
            "r": role,
            "s": subject,
            "e": env_id,
            "x": self.expiry(ttl_s),
            "ro": read_only,
            "g": generation,
        }
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def expiry(self, ttl_s: float) -> float:
        """When a token issued now with this lifetime expires (epoch seconds, as in its claims)."""
        return round(self._clock() + ttl_s, 3)

    def verify(self, token: str | None) -> Claims:
        if not token or token.count(".") != 1:
            raise TokenError("missing or malformed token")
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise TokenError("malformed token: too long or not ASCII")
        body, signature = token.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            raise TokenError("invalid token signature")
        try:
            claims = _parse(json.loads(_unb64(body)))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise TokenError("malformed token") from exc
        if claims.expires_at < self._clock():
            raise TokenError("token expired")
        reason = self._revoked(claims) if self._revoked and claims.env_id is not None else None
        if reason:
            raise TokenError(f"token revoked: {reason}")
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
