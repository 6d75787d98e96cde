"""Credentials over SSE, against raw servers on 127.0.0.1: a token in the query string never
reaches a log line (urllib3's included), a hostile server that echoes the credentials never
gets them into an error or its chain, and redirects are followed only within the origin."""

from __future__ import annotations

import logging
from typing import Any, List, Optional

import pytest

from magk_client.errors import AuthError, MagkConnectionError, ProtocolError
from magk_client.testing.raw import Conn, Request, reply, sse
from magk_client.transports.base import SSEEvent

pytestmark = pytest.mark.timeout(30)

TOKEN = "tok/SECRET+4242"  # quoted in a URL: tok%2FSECRET%2B4242
QUOTED = "tok%2FSECRET%2B4242"
API_KEY = "key-SECRET-9999"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-API-Key": API_KEY}


def secret_free(err: Optional[BaseException]) -> None:
    """``err``, its message, repr and every exception chained to it hold no credential."""
    seen: List[BaseException] = []
    while err is not None and not any(err is s for s in seen):
        seen.append(err)
        for text in (str(err), repr(err), *map(repr, err.args)):
            assert "SECRET" not in text and QUOTED not in text, f"{type(err).__name__}: {text}"
        nxt = err.__cause__ or err.__context__
        err = nxt


# --- issue 8 item 17: the token in the query string and urllib3's log ------------------------


def test_token_in_query_never_reaches_the_urllib3_debug_log(
    raw_servers: Any, sse_transports: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's included
    srv = raw_servers([sse([b"data: a\n\n"]), reply(204)])
    query = f"?token={QUOTED}&x=1"
    t = sse_transports(srv.url("/events" + query), headers=AUTH, messages_url=srv.url("/messages" + query))
    t.open()
    assert [e.data for e in t.receive() if isinstance(e, SSEEvent)] == ["a"]
    t.send("{}")
    first, second = srv.wait_requests(2)
    assert first.path == "/events" + query and second.path == "/messages" + query  # sent as asked
    urllib3_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    # the test sees urllib3's request lines (with the redacted query) ...
    assert any('"GET /events?token=***&x=1 ' in line for line in urllib3_lines), urllib3_lines
    assert any('"POST /messages?token=***&x=1 ' in line for line in urllib3_lines), urllib3_lines
    # ... and no line anywhere holds the token
    for rec in caplog.records:
        msg = rec.getMessage()
        assert QUOTED not in msg and "SECRET" not in msg, (rec.name, msg)


def test_the_urllib3_log_filter_is_installed_once_and_scrubs_only_credentials(sse_transports: Any) -> None:
    from magk_client.transports import sse_http as sse_module

    for _ in range(3):
        sse_transports("http://127.0.0.1:9/events")
        sse_module.install_log_filter()
    pool_log = logging.getLogger("urllib3.connectionpool")
    ours = [f for f in pool_log.filters if isinstance(f, sse_module.CredentialQueryFilter)]
    assert len(ours) == 1
    record = logging.LogRecord(
        "urllib3.connectionpool", logging.DEBUG, __file__, 1, '%s "%s %s" %s', ("http://h:1", "GET", "/e?a=1&token=abc&api_key=k#f", 200), None
    )
    assert ours[0].filter(record)
    assert record.getMessage() == 'http://h:1 "GET /e?a=1&token=***&api_key=***#f" 200'
    plain = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, "GET %s", ("/e?a=1",), None)
    assert ours[0].filter(plain) and plain.getMessage() == "GET /e?a=1" and plain.args == ("/e?a=1",)


# --- issue 8 item 17: a hostile server echoing the credentials --------------------------------


def _echo(req: Request) -> bytes:
    return f"{req.headers.get('authorization', '')} {req.headers.get('x-api-key', '')}".encode()


def hostile_401(conn: Conn, req: Request) -> None:
    echo = _echo(req)
    conn.send(
        b"HTTP/1.1 401 " + echo + b"\r\nWWW-Authenticate: " + echo + b"\r\nContent-Length: %d\r\n\r\n" % len(echo) + echo
    )


def echoed_status_line(conn: Conn, req: Request) -> None:
    conn.send(b"Authorization: " + _echo(req) + b"\r\n\r\n")  # not HTTP at all: a BadStatusLine


def echoed_chunk_size(conn: Conn, req: Request) -> None:
    conn.head(200, [("Content-Type", "text/event-stream")], chunked=True)
    conn.chunk(b"data: a\n\n")
    conn.send(_echo(req) + b"\r\n")  # a chunk-size line holding the credentials


@pytest.mark.parametrize(
    "handler", [hostile_401, echoed_status_line, echoed_chunk_size], ids=["401", "status-line", "chunk-size"]
)
def test_credentials_echoed_by_the_server_never_reach_the_error_or_its_chain(
    raw_servers: Any, sse_transports: Any, handler: Any
) -> None:
    srv = raw_servers([handler])
    post = srv if handler is not echoed_chunk_size else raw_servers([echoed_status_line])
    t = sse_transports(srv.url(f"/events?token={QUOTED}"), headers=AUTH, messages_url=post.url("/messages"))
    with pytest.raises(MagkConnectionError) as ei:
        t.open()
        while True:
            t.receive()
    if handler is hostile_401:
        assert isinstance(ei.value, AuthError) and ei.value.status == 401
    secret_free(ei.value)
    assert ei.value.__cause__ is None and ei.value.__context__ is None  # no dependency error chained
    with pytest.raises(MagkConnectionError) as again:
        t.receive()
    secret_free(again.value)
    with pytest.raises(MagkConnectionError) as sent:
        t.send("{}")  # the POST is answered with the credentials echoed too
    secret_free(sent.value)
    assert sent.value.__cause__ is None and sent.value.__context__ is None


# --- issue 8 item 20: redirects within the origin are followed ---------------------------------


def redirect(status: int, location: str) -> Any:
    return reply(status, b"moved", [("Location", location)])


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_same_origin_redirect_is_followed_with_the_credentials(raw_servers: Any, sse_transports: Any, status: int) -> None:
    srv = raw_servers([redirect(status, "/moved?to=here"), sse([b"id: 7\ndata: after the move\n\n"])])
    t = sse_transports(srv.url("/events"), headers=AUTH)
    t.open(last_event_id="e-6")
    assert [(e.data, e.id) for e in t.receive() if isinstance(e, SSEEvent)] == [("after the move", "7")]
    first, second = srv.wait_requests(2)
    assert (first.method, first.path) == ("GET", "/events")
    assert (second.method, second.path) == ("GET", "/moved?to=here")
    for req in (first, second):
        assert req.headers["authorization"] == f"Bearer {TOKEN}" and req.headers["x-api-key"] == API_KEY
        assert req.headers["last-event-id"] == "e-6" and req.headers["accept"] == "text/event-stream"
    assert t.status == 200


def test_a_chain_of_redirects_within_the_origin_is_followed(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([reply(0)])  # handlers set below, once the port is known
    absolute = srv.url("/c")
    srv.handlers[:] = [
        redirect(301, "/b"),
        redirect(307, absolute),  # absolute, same scheme, host and port
        redirect(308, "d"),  # relative to /c
        sse([b"data: ok\n\n"]),
    ]
    t = sse_transports(srv.url("/a"))
    t.open()
    assert [e.data for e in t.receive() if isinstance(e, SSEEvent)] == ["ok"]
    assert [r.path for r in srv.wait_requests(4)] == ["/a", "/b", "/c", "/d"]


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.2:{port}/events",  # other host
        "http://127.0.0.1:{other}/events",  # other port
        "https://127.0.0.1:{port}/events",  # other scheme
        "//127.0.0.2:{port}/events",  # other host, scheme-relative
        "http://user:pw@127.0.0.1:{port}/events",  # credentials of its own
    ],
)
def test_a_redirect_to_another_origin_is_refused(raw_servers: Any, sse_transports: Any, location: str) -> None:
    other = raw_servers([sse([b"data: stolen\n\n"])])
    srv = raw_servers([reply(0)])
    srv.handlers[:] = [redirect(307, location.format(port=srv.port, other=other.port)), sse([b"data: stolen\n\n"])]
    t = sse_transports(srv.url("/events"), headers=AUTH)
    with pytest.raises(ProtocolError) as ei:
        t.open()
    assert ei.value.terminal and ei.value.status == 307
    assert "redirect refused" in str(ei.value) and "credentials stay on this host" in str(ei.value)
    assert len(srv.requests) == 1 and other.requests == []
    secret_free(ei.value)


def test_a_redirect_loop_is_refused(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([redirect(302, "/b"), redirect(302, "/a?token=" + QUOTED), redirect(302, "/b")])
    t = sse_transports(srv.url("/a?token=" + QUOTED), headers=AUTH)
    with pytest.raises(ProtocolError) as ei:
        t.open()
    assert ei.value.terminal and ei.value.status == 302
    assert "redirect loop" in str(ei.value)
    assert [r.path for r in srv.requests] == ["/a?token=" + QUOTED, "/b"]
    secret_free(ei.value)


def test_more_than_five_redirects_are_refused(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([*[redirect(307, f"/hop{i}") for i in range(1, 7)], sse([b"data: too far\n\n"])])
    t = sse_transports(srv.url("/hop0"))
    with pytest.raises(ProtocolError) as ei:
        t.open()
    assert ei.value.terminal and "too many redirects" in str(ei.value)
    assert len(srv.requests) == 6  # the first request and five redirects followed


def test_a_redirect_without_location_is_refused(raw_servers: Any, sse_transports: Any) -> None:
    srv = raw_servers([reply(307, b"", []), reply(304, b"", [("Location", "/b")])])
    for _ in range(2):
        t = sse_transports(srv.url("/a"))
        with pytest.raises(ProtocolError) as ei:
            t.open()
        assert ei.value.terminal and "redirect refused" in str(ei.value)
    assert [r.path for r in srv.requests] == ["/a", "/a"]
