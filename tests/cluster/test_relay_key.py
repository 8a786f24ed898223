"""The header that marks a terminal websocket as relayed by a peer: what the holder accepts and refuses."""

from __future__ import annotations

import pytest

from stacklab.errors import Refused
from stacklab.web.relay import MAX_SKEW_S, RelayKey, websocket_url

PATH, QUERY = "/api/v1/environments/e1/terminal/main", "token=T&session=S&offset=0"


def test_a_signed_request_is_accepted_only_as_it_was_signed() -> None:
    now = [1000.0]
    key = RelayKey("a-secret-derived-from-the-service-key", clock=lambda: now[0])
    header = key.sign("web-host-12-ab12cd", PATH, QUERY)
    assert key.verify(header, PATH, QUERY) == "web-host-12-ab12cd"
    for path, query in ((PATH + "x", QUERY), (PATH, QUERY.replace("S", "S2")), (PATH, "")):
        with pytest.raises(Refused, match="bad signature") as refused:
            key.verify(header, path, query)
        assert refused.value.code == 4403
    with pytest.raises(Refused, match="bad signature"):
        RelayKey("another-deployment's-secret", clock=lambda: now[0]).verify(header, PATH, QUERY)
    with pytest.raises(Refused, match="bad signature"):  # the member id is signed too
        key.verify("web-other" + header[header.index(":") :], PATH, QUERY)
    now[0] += MAX_SKEW_S + 1
    with pytest.raises(Refused, match="stale"):
        key.verify(header, PATH, QUERY)


@pytest.mark.parametrize("header", ["", "nonsense", "a:b:c", "web:12x:00"])
def test_a_malformed_header_is_refused(header: str) -> None:
    with pytest.raises(Refused, match="malformed") as refused:
        RelayKey("secret").verify(header, PATH, QUERY)
    assert refused.value.code == 4403


def test_the_holders_websocket_url_follows_its_advertised_scheme() -> None:
    assert websocket_url("http://10.0.0.2:8080", PATH, QUERY) == f"ws://10.0.0.2:8080{PATH}?{QUERY}"
    assert websocket_url("https://web-2.internal", PATH, "") == f"wss://web-2.internal{PATH}"
