"""OpenStack failures converted to stacklab's typed provider errors (no credentials in any message).

What the controller does with each (see errors.py for the tree):

- TransientProviderError: Keystone or Heat unreachable, timed out, 5xx, 408, 409, 429 - retried with backoff
  (`ProviderUnavailable`, `Timeout`, `Conflict`, `RateLimited`).
- CapacityExhausted: the project's stack quota is full (Heat's `max_stacks_per_tenant`, 413) - the next
  provider of the lab is tried (`QuotaExceeded`).
- TerminalProviderError: retrying the same request here will not help - wrong credentials, not allowed, TLS
  verification, missing endpoint or cloud, a request Heat refuses (`AuthFailed`, `Forbidden`, `TLSFailed`,
  `NoHeatEndpoint`, `CloudNotConfigured`, `BadRequest`, `LimitExceeded`, `NotFound`).

Messages are for operators (the learner sees a sentence chosen from the reason); they name the cloud, what
was being done and, for an unreachable service, its host and port, never a token or a password.
"""

from __future__ import annotations

import re

import requests
from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk
from openstack.config import exceptions as config_errors

from stacklab.errors import CapacityExhausted, ProviderError, TerminalProviderError, TransientProviderError

TLS = (ksa.SSLError, requests.exceptions.SSLError)
TIMEOUTS = (ksa.ConnectTimeout, requests.exceptions.Timeout)
UNREACHABLE = (
    ksa.ConnectionError,
    ksa.RetriableConnectionFailure,
    ksa.DiscoveryFailure,
    requests.exceptions.ConnectionError,
)
QUOTA_WORDS = ("maximum stacks", "quota exceeded", "overlimit")
"""Heat's stack limit says "You have reached the maximum stacks per tenant" (a 400 RequestLimitExceeded);
other services' quotas say "Quota exceeded" or answer 413 OverLimit."""
_HOST = re.compile(r"https?://([^/\s:]+(?::\d+)?)")


def _status(exc: BaseException) -> int | None:
    for name in ("status_code", "http_status"):
        value = getattr(exc, name, None)
        if isinstance(value, int) and value:
            return value
    return None


def _detail(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = str(details or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _heat_type(exc: BaseException) -> str:
    """The exception class Heat named in its error body (`{"error": {"type": "RequestLimitExceeded"}}`)."""
    response = getattr(exc, "response", None)
    try:
        body = response.json() if response is not None else None
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("type") or "") if isinstance(error, dict) else ""


def _inside(exc: BaseException) -> str:
    """What failed inside Heat, when its 5xx body names it: the operator learns which service to look at
    (Heat's middleware answers 503 for a Keystone it cannot reach; once it has checked the token, the engine's
    own call to Keystone fails as a bare 500 naming only keystoneauth's exception)."""
    kind = _heat_type(exc)
    named = getattr(ksa, kind, None) if kind else None
    if isinstance(named, type) and issubclass(named, UNREACHABLE + TIMEOUTS):  # as _connection sorts them
        return f" (Heat could not reach a service it calls, most likely Keystone: {kind})"
    return f" ({kind})" if kind else ""


def _host(exc: BaseException) -> str:
    """The host:port a connection failure was about (which service is down), without path or query."""
    found = _HOST.search(str(exc))
    return f" at {found.group(1)}" if found else ""


def translate(exc: BaseException, cloud: str, doing: str) -> ProviderError:
    """The typed error for `exc`, raised while `doing` something on `cloud`."""
    if isinstance(exc, ProviderError):
        return exc
    cause = exc.__cause__ or exc.__context__
    if type(exc) is sdk.SDKException and cause is not None:  # authorize() wraps keystoneauth's error
        return translate(cause, cloud, doing)
    where = f"cloud {cloud!r}: {doing}"
    return _connection(exc, where) or _http(exc, where)


def _connection(exc: BaseException, where: str) -> ProviderError | None:
    """Errors raised before any HTTP status: configuration, TLS, refused connections, timeouts."""
    if isinstance(exc, config_errors.OpenStackConfigException):
        return TerminalProviderError(f"{where}: clouds.yaml: {exc}", reason="CloudNotConfigured")
    if isinstance(exc, TLS):
        return TerminalProviderError(
            f"{where}: TLS failed{_host(exc)} (the certificate is not trusted or the handshake failed)",
            reason="TLSFailed",
        )
    if isinstance(exc, TIMEOUTS):
        return TransientProviderError(f"{where}: no answer in time{_host(exc)}", reason="Timeout")
    if isinstance(exc, UNREACHABLE):
        return TransientProviderError(f"{where}: the API is unreachable{_host(exc)} ({type(exc).__name__})")
    if isinstance(exc, ksa.EndpointNotFound | ksa.EmptyCatalog | sdk.EndpointNotFound):
        return TerminalProviderError(f"{where}: no Heat endpoint in the catalog", reason="NoHeatEndpoint")
    return None


def _http(exc: BaseException, where: str) -> ProviderError:
    """Errors that carry an HTTP status (or none at all), by status."""
    status = _status(exc)
    message = _detail(exc)
    if isinstance(exc, ksa.Unauthorized) or status == 401:
        return TerminalProviderError(
            f"{where}: authentication failed (check the credentials of this cloud in clouds.yaml)",
            reason="AuthFailed",
        )
    if status == 403:
        return TerminalProviderError(f"{where}: not allowed: {message}", reason="Forbidden")
    if status == 413 or any(word in message.lower() for word in QUOTA_WORDS):
        return CapacityExhausted(f"{where}: quota exceeded: {message}", reason="QuotaExceeded")
    if status == 429:
        return TransientProviderError(f"{where}: too many requests: {message}", reason="RateLimited")
    if status == 409:
        return TransientProviderError(f"{where}: conflict: {message}", reason="Conflict")
    if status == 408:
        return TransientProviderError(f"{where}: no answer in time: {message}", reason="Timeout")
    if status is not None and status >= 500:
        return TransientProviderError(f"{where}: the cloud answered {status}: {message}{_inside(exc)}")
    if status == 404:
        return TerminalProviderError(f"{where}: not found: {message}", reason="NotFound")
    if status is not None and _heat_type(exc) == "RequestLimitExceeded":  # template size, resources per stack
        return TerminalProviderError(f"{where}: Heat's limit: {message}", reason="LimitExceeded")
    if status is not None:
        return TerminalProviderError(
            f"{where}: Heat refused the request ({status}): {message}", reason="BadRequest"
        )
    if isinstance(exc, ksa.ClientException | sdk.SDKException):
        return TransientProviderError(f"{where}: {type(exc).__name__}: {message}")
    return TransientProviderError(f"{where}: {type(exc).__name__}: {message}", reason="UnexpectedError")
