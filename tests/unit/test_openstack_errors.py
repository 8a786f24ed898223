"""providers/openstack/errors.py: every failure openstacksdk and keystoneauth raise becomes one typed error.

The exceptions are real: connection failures come from a keystoneauth session against sockets on loopback
(refused, silent, not TLS), HTTP errors from the factories the libraries themselves use on a response
(`openstack.exceptions.raise_from_response`, `keystoneauth1.exceptions.from_response`).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from keystoneauth1 import exceptions as ksa
from keystoneauth1 import session as ksa_session
from openstack import exceptions as sdk
from openstack.config import exceptions as config_errors

from stacklab.errors import CapacityExhausted, ProviderError, TerminalProviderError, TransientProviderError
from stacklab.providers.openstack.errors import translate

URL = "http://127.0.0.1:8004/v1/4af2/stacks/sl-1"
HEAT_QUOTA = "You have reached the maximum stacks per tenant, 1. Please delete some stacks."


def heat_response(status: int, message: str | None, kind: str = "HTTPError") -> requests.Response:
    """A response as Heat's fault middleware writes it (with no message at all when `message` is None)."""
    response = requests.Response()
    response.status_code = status
    response.reason = requests.status_codes._codes[status][0].replace("_", " ").title()
    response.headers["content-type"] = "application/json"
    response.url = URL
    error = {"traceback": None, "type": kind} | ({} if message is None else {"message": message})
    body = {"code": status, "error": error, "title": "x"}
    response._content = json.dumps(body).encode()
    return response


def sdk_error(status: int, message: str = "it went wrong", kind: str = "HTTPError") -> sdk.SDKException:
    try:
        sdk.raise_from_response(heat_response(status, message, kind))
    except sdk.SDKException as exc:
        return exc
    raise AssertionError(f"no exception for {status}")


def ksa_error(status: int, message: str = "it went wrong") -> ksa.ClientException:
    return ksa.from_response(heat_response(status, message), "GET", URL)


def assert_plain(error: ProviderError) -> None:
    """One line for an operator that names the cloud and what was done; no traceback, no secret."""
    text = str(error)
    assert text.startswith("cloud 'lab-cloud': creating stack sl-1: "), text
    assert "\n" not in text and "Traceback" not in text and "demopass" not in text


def convert(exc: BaseException) -> ProviderError:
    error = translate(exc, "lab-cloud", "creating stack sl-1")
    assert_plain(error)
    return error


# connection failures, raised by a real keystoneauth session ---------------------------------------------
@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture
def plain_http_port() -> Iterator[int]:
    """A port that answers every connection in plain HTTP (a TLS client fails its handshake)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(5)

    def answer() -> None:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(timeout=5)


def session_error(url: str, timeout: float = 2.0) -> ksa.ClientException:
    with pytest.raises(ksa.ClientException) as raised:
        ksa_session.Session(timeout=timeout).get(url)
    return raised.value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_is_transient_and_names_the_service() -> None:
    port = free_port()
    error = convert(session_error(f"http://127.0.0.1:{port}/v3/auth/tokens?password=demopass"))
    assert type(error) is TransientProviderError and error.reason == "ProviderUnavailable"
    assert f"unreachable at 127.0.0.1:{port} (ConnectFailure)" in str(error)


def test_timeout_is_transient(silent_port: int) -> None:
    error = convert(session_error(f"http://127.0.0.1:{silent_port}/v1/stacks", timeout=0.3))
    assert type(error) is TransientProviderError and error.reason == "Timeout"
    assert str(error).endswith(f"no answer in time at 127.0.0.1:{silent_port}")


def test_tls_failure_is_terminal(plain_http_port: int) -> None:
    exc = session_error(f"https://127.0.0.1:{plain_http_port}/v3")
    assert isinstance(exc, ksa.SSLError)
    error = convert(exc)
    assert type(error) is TerminalProviderError and error.reason == "TLSFailed"


def test_sdk_wrapping_a_keystoneauth_error_is_translated_by_its_cause() -> None:
    try:
        try:
            raise ksa.ConnectFailure("Unable to establish connection to http://127.0.0.1:5000/v3/auth/tokens")
        except ksa.ConnectFailure as inner:
            raise sdk.SDKException("Error authenticating to the keystone") from inner
    except sdk.SDKException as outer:
        error = convert(outer)
    assert type(error) is TransientProviderError and "127.0.0.1:5000" in str(error)


def test_discovery_failure_is_transient() -> None:
    error = convert(ksa.DiscoveryFailure("Could not find versioned identity endpoints"))
    assert type(error) is TransientProviderError and error.reason == "ProviderUnavailable"


# HTTP statuses, from openstacksdk and from keystoneauth ---------------------------------------------------
CASES = [
    (401, TerminalProviderError, "AuthFailed", "authentication failed"),
    (403, TerminalProviderError, "Forbidden", "not allowed: it went wrong"),
    (404, TerminalProviderError, "NotFound", "not found: it went wrong"),
    (400, TerminalProviderError, "BadRequest", "Heat refused the request (400): it went wrong"),
    (409, TransientProviderError, "Conflict", "conflict: it went wrong"),
    (413, CapacityExhausted, "QuotaExceeded", "quota exceeded: it went wrong"),
    (429, TransientProviderError, "RateLimited", "too many requests: it went wrong"),
    (500, TransientProviderError, "ProviderUnavailable", "the cloud answered 500: it went wrong"),
    (503, TransientProviderError, "ProviderUnavailable", "the cloud answered 503: it went wrong"),
]


@pytest.mark.parametrize(("status", "kind", "reason", "text"), CASES)
@pytest.mark.parametrize("library", ["openstacksdk", "keystoneauth1"])
def test_http_status(status: int, kind: type, reason: str, text: str, library: str) -> None:
    exc = sdk_error(status) if library == "openstacksdk" else ksa_error(status)
    error = convert(exc)
    assert type(error) is kind and error.reason == reason
    assert text in str(error)


def test_heats_stack_limit_is_a_quota_although_heat_answers_400() -> None:
    exc = sdk_error(400, HEAT_QUOTA, "RequestLimitExceeded")
    assert isinstance(exc, sdk.BadRequestException)
    error = convert(exc)
    assert type(error) is CapacityExhausted and error.reason == "QuotaExceeded"
    assert "maximum stacks per tenant" in str(error)


def test_other_heat_limits_are_not_quotas() -> None:
    exc = sdk_error(400, "Template size (600000 bytes) exceeds maximum allowed size", "RequestLimitExceeded")
    error = convert(exc)
    assert type(error) is TerminalProviderError and error.reason == "LimitExceeded"


def test_heat_unable_to_reach_keystone_names_it() -> None:
    """Keystone stopped after heat-api had checked the token: the engine's call for the trust fails and
    Heat answers a 500 whose body names only keystoneauth's exception (the body as the harness's Heat wrote
    it). The operator still learns where to look."""
    response = heat_response(500, None, "ConnectFailure")
    with pytest.raises(sdk.HttpException) as raised:
        sdk.raise_from_response(response)
    error = convert(raised.value)
    assert type(error) is TransientProviderError and error.reason == "ProviderUnavailable"
    assert "Keystone: ConnectFailure" in str(error), str(error)


def test_a_heat_fault_names_its_exception() -> None:
    error = convert(sdk_error(500, "boom", "StackValidationFailed"))
    assert "the cloud answered 500: boom (StackValidationFailed)" in str(error)


def test_html_error_pages_become_one_line() -> None:
    response = heat_response(502, "")
    response.headers["content-type"] = "text/html"
    response._content = b"<html><body>\n<h1>502 Bad Gateway</h1>\n<p>nginx</p>\n</body></html>"
    with pytest.raises(sdk.HttpException) as raised:
        sdk.raise_from_response(response)
    error = convert(raised.value)
    assert type(error) is TransientProviderError and "502 Bad Gateway" in str(error)


# configuration and catalog -------------------------------------------------------------------------------
def test_missing_cloud_is_terminal() -> None:
    error = convert(config_errors.OpenStackConfigException("Cloud lab-cloud was not found."))
    assert type(error) is TerminalProviderError and error.reason == "CloudNotConfigured"


@pytest.mark.parametrize(
    "exc",
    [
        ksa.EndpointNotFound("no orchestration endpoint"),
        ksa.EmptyCatalog("The service catalog is empty."),
        sdk.EndpointNotFound("no orchestration endpoint"),
    ],
)
def test_no_heat_endpoint_is_terminal(exc: Exception) -> None:
    error = convert(exc)
    assert type(error) is TerminalProviderError and error.reason == "NoHeatEndpoint"


def test_sdk_errors_without_status_are_transient() -> None:
    error = convert(sdk.ResourceTimeout("Timeout waiting for the stack"))
    assert type(error) is TransientProviderError and error.reason == "ProviderUnavailable"


def test_unexpected_errors_are_transient_and_named() -> None:
    error = convert(KeyError("outputs"))
    assert type(error) is TransientProviderError and error.reason == "UnexpectedError"
    assert "KeyError" in str(error)


def test_provider_errors_pass_through() -> None:
    original = CapacityExhausted("full", reason="QuotaExceeded")
    assert translate(original, "lab-cloud", "creating stack sl-1") is original
