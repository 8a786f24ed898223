"""What every request handler needs, built once per process and kept on `app.state.ctx`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import HTTPException, Request, WebSocket

from stacklab.config import LmsKey
from stacklab.errors import TokenError
from stacklab.labs.catalog import LabCatalog
from stacklab.store.operators import operator_revocation
from stacklab.store.repository import Repository
from stacklab.store.revocations import revocation_reason
from stacklab.web.limits import Limits
from stacklab.web.tokens import Claims, RevocationCheck, TokenSigner, allows
from stacklab.wiring import App


@dataclass
class WebContext:
    stack: App
    signer: TokenSigner
    catalog: LabCatalog
    public_url: str
    admin_password: str
    """The admin_password setting (or the generated one): the `admin` account's while it follows it."""
    lms_keys: dict[str, LmsKey] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    terminal_closers: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)

    async def close_terminals(self, env_id: str) -> None:
        """Let go of the terminals of an environment this process just paused, reset or deleted (at once,
        not at the terminal watch's next look)."""
        for close in self.terminal_closers:
            await close(env_id)

    def allowed_origins(self, _host_header: object = None) -> set[str]:
        """Origins whose pages may open terminals: the service's public URL and the configured LMS origins.

        From configuration only: the Host header is whatever the client sends, so an origin derived from
        it would let any page that forges the header in. (The argument is accepted and ignored.)
        """
        configured = {origin.rstrip("/") for origin in self.stack.settings.allowed_origins}
        return {self.public_url.rstrip("/")} | configured


def token_revocation(repo: Repository) -> RevocationCheck:
    """The store's word on a correctly signed token: its lab's or its operator account's generation."""

    def revoked(claims: Claims) -> str | None:
        if claims.env_id is not None:
            return revocation_reason(repo, claims.env_id, claims.generation)
        if claims.role == "admin":
            return operator_revocation(repo, claims.subject, claims.generation)
        return None

    return revoked


def context(request: Request | WebSocket) -> WebContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def bearer(request: Request | WebSocket) -> str | None:
    """The token from `Authorization: Bearer`, or the `token` query parameter (websockets, links)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token")


def authorize(
    request: Request | WebSocket, env_id: str, *, write: bool = False, token: str | None = None
) -> Claims:
    """Claims of a token that may act on this environment, or HTTP 401/403. The token is the request's
    (`bearer`) unless given (a beacon's, from its body)."""
    try:
        claims = context(request).signer.verify(token if token is not None else bearer(request))
    except TokenError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    if not allows(claims, env_id, write=write):
        raise HTTPException(status_code=403, detail="this token does not grant access to that environment")
    return claims
