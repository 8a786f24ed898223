"""What every request handler needs, built once per process and kept on `app.state.ctx`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import HTTPException, Request, WebSocket

from stacklab.labs.catalog import LabCatalog
from stacklab.errors import TokenError
from stacklab.web.tokens import Claims, TokenSigner, allows
from stacklab.wiring import App


@dataclass
class WebContext:
    stack: App
    signer: TokenSigner
    catalog: LabCatalog
    public_url: str
    admin_password: str
    terminal_closers: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)

    async def close_terminals(self, env_id: str) -> None:
        """Close open terminals of an environment that is being reset or deleted."""
        for close in self.terminal_closers:
            await close(env_id)

    def allowed_origins(self, host_header: str | None) -> set[str]:
        """The service's own origin (as configured and as reached) plus configured extras."""
        origins = {self.public_url.rstrip("/")}
        if host_header:
            origins |= {f"http://{host_header}", f"https://{host_header}"}
        return origins | set(self.stack.settings.allowed_origins)


def context(request: Request | WebSocket) -> WebContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def bearer(request: Request | WebSocket) -> str | None:
    """The token from `Authorization: Bearer`, or the `token` query parameter (websockets, links)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token")


def authorize(request: Request | WebSocket, env_id: str, *, write: bool = False) -> Claims:
    """Claims of a token that may act on this environment, or HTTP 401/403."""
    try:
        claims = context(request).signer.verify(bearer(request))
    except TokenError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    if not allows(claims, env_id, write=write):
        raise HTTPException(status_code=403, detail="this token does not grant access to that environment")
    return claims
