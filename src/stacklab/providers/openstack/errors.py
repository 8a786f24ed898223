"""OpenStack failures converted to stacklab's typed provider errors (no credentials in any message)."""

from __future__ import annotations

from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk
from openstack.config import exceptions as config_errors

from stacklab.errors import CapacityExhausted, ProviderError, TerminalProviderError, TransientProviderError

UNREACHABLE = (ksa.ConnectFailure, ksa.ConnectTimeout, ksa.RetriableConnectionFailure, ksa.DiscoveryFailure)


def _status(exc: BaseException) -> int | None:
    for name in ("status_code", "http_status"):
        value = getattr(exc, name, None)
        if isinstance(value, int):
            return value
    return None


def _detail(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = str(details or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(exc: BaseException, cloud: str, doing: str) -> ProviderError:
    """The typed error for `exc`, raised while `doing` something on `cloud`."""
    where = f"cloud {cloud!r}: {doing}"
    if isinstance(exc, ProviderError):
        return exc
    cause = exc.__cause__ or exc.__context__
    if type(exc) is sdk.SDKException and cause is not None:  # authorize() wraps keystoneauth's error
        return translate(cause, cloud, doing)
    if isinstance(exc, config_errors.OpenStackConfigException):
        return TerminalProviderError(f"{where}: clouds.yaml: {exc}", reason="CloudNotConfigured")
    if isinstance(exc, UNREACHABLE):
        return TransientProviderError(f"{where}: the API is unreachable ({type(exc).__name__})")
    if isinstance(exc, ksa.EndpointNotFound | ksa.EmptyCatalog | sdk.EndpointNotFound):
        return TerminalProviderError(f"{where}: no Heat endpoint in the catalog", reason="NoHeatEndpoint")
    status = _status(exc)
    if isinstance(exc, ksa.Unauthorized) or status == 401:
        return TerminalProviderError(
            f"{where}: authentication failed (check the credentials of this cloud in clouds.yaml)",
            reason="AuthFailed",
        )
    if status == 403:
        return TerminalProviderError(f"{where}: not allowed: {_detail(exc)}", reason="Forbidden")
    message = _detail(exc)
    if status == 413 or "maximum stacks" in message or "RequestLimitExceeded" in message:
        return CapacityExhausted(f"{where}: quota exceeded: {message}", reason="QuotaExceeded")
    if status == 400:
        return TerminalProviderError(f"{where}: Heat refused the request: {message}", reason="BadRequest")
    if status == 409:
        return TransientProviderError(f"{where}: conflict: {message}", reason="Conflict")
    if status is None or status >= 500 or isinstance(exc, ksa.ClientException | sdk.SDKException):
        return TransientProviderError(f"{where}: {message}")
    return TerminalProviderError(f"{where}: {message}")
