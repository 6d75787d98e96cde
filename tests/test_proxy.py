"""Tests for ``magk_client.testing.proxy.FaultProxy``.

The upstream side is a raw threaded TCP server of ``magk_client.testing.raw`` (echo, sink or source), so
these tests do not depend on the reference backend. Waits are on conditions with bounded timeouts; the only fixed waits
are socket timeouts that a test *expects* to expire (silence is what is being tested).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from checks import open_fds

from magk_client.testing.proxy import FaultProxy
from magk_client.testing.raw import RawServer, echo, sink, source

TIMEOUT = 5.0  # upper bound for anything that should happen
SILENCE = 0.3  # how long a test listens to make sure nothing arrives


# ---------------------------------------------------------------------------------------------- helpers


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Bounded poll of a condition that has no event of its own (thread and fd counts)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        pause.wait(0.005)
    return True


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("magk-proxy")]


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_until_closed(sock: socket.socket) -> tuple[bytes, OSError | None]:
    """Read until EOF (error None) or an error (returned, not raised)."""
    buf = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError as exc:
            return bytes(buf), exc
        if not chunk:
            return bytes(buf), None
        buf += chunk


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return recv_exactly(sock, len(data))


@pytest.fixture
def make_server(raw_servers: Callable[..., RawServer]) -> Callable[..., RawServer]:
    """The upstream: a raw TCP server on 127.0.0.1 (magk_client.testing.raw). Mode ``echo`` sends back
    what it reads; ``sink`` only reads; ``source`` sends ``payload`` first, then reads until the client
    goes away. It records what each connection read (``received``, ``recv_sizes``) and its errors."""

    def make(mode: str = "echo", payload: bytes = b"") -> RawServer:
        script = {"echo": echo, "sink": sink, "source": source(payload)}[mode]
        return raw_servers(tcp=script, timeout=None)

    return make


@pytest.fixture
def connect() -> Iterator[Callable[[FaultProxy], socket.socket]]:
    """Open client sockets to a proxy; all of them are closed after the test."""
    socks: list[socket.socket] = []

    def do_connect(proxy: FaultProxy) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # before connect: the proxy may reset at once
        sock.settimeout(TIMEOUT)
        sock.connect(proxy.address)
        return sock

    yield do_connect
    for sock in socks:
        sock.close()


@pytest.fixture(autouse=True)
def _no_proxy_thread_survives() -> Iterator[None]:
    yield
    assert wait_until(lambda: not proxy_threads()), f"proxy threads left running: {proxy_threads()}"


# ---------------------------------------------------------------------------------------------- tests


def test_forwards_both_ways_byte_identical_and_passes_half_close(make_server, connect) -> None:
    server = make_server("echo")
    payload = os.urandom(1 << 20)
    with FaultProxy("127.0.0.1", server.port) as proxy:
        client = connect(proxy)
        sender = threading.Thread(target=client.sendall, args=(payload,), name="test-sender")
        sender.start()
        echoed = recv_exactly(client, len(payload))
        sender.join(TIMEOUT)
        assert echoed == payload
        assert bytes(server.received[0]) == payload
        # Counters move just after each send(), so the receiver may see bytes a moment before they count.
        assert proxy.wait_until(lambda p: p.bytes_down == len(payload), TIMEOUT), proxy.bytes_down
        assert proxy.bytes_up == len(payload)
        assert proxy.connections_accepted == 1
        assert proxy.active_connections == 1

        # FIN from the client reaches the server; the server's FIN comes back as EOF, not as a reset.
        client.shutdown(socket.SHUT_WR)
        assert client.recv(1) == b""
        assert proxy.wait_until(lambda p: p.active_connections == 0, TIMEOUT)
        assert proxy.connections_reset == 0
        assert server.wait(lambda: server.finished == 1)
        assert server.errors == []


def test_reset_peer_resets_both_sides_and_new_connections_work(make_server, connect) -> None:
    server = make_server("echo")
    with FaultProxy("127.0.0.1", server.port) as proxy:
        client = connect(proxy)
        assert roundtrip(client, b"ping") == b"ping"

        assert proxy.reset_peer() == 1
        with pytest.raises(ConnectionResetError):
            client.recv(10)
        assert server.wait(lambda: server.finished == 1)
        assert any(isinstance(e, ConnectionResetError) for e in server.errors)
        assert proxy.active_connections == 0
        assert proxy.connections_reset == 1

        again = connect(proxy)
        assert roundtrip(again, b"pong") == b"pong"
        assert proxy.connections_accepted == 2


def test_blackhole_silences_both_ways_then_delivers_held_bytes(make_server, connect) -> None:
    server = make_server("echo")
    with FaultProxy("127.0.0.1", server.port) as proxy:
        client = connect(proxy)
        assert roundtrip(client, b"ping") == b"ping"

        proxy.blackhole(True)
        client.sendall(b"held")
        late = connect(proxy)  # a connection made during the blackhole is silent too
        late.sendall(b"late")
        assert proxy.wait_for_connections(2, TIMEOUT)
        client.settimeout(SILENCE)
        late.settimeout(SILENCE)
        with pytest.raises(socket.timeout):
            client.recv(10)
        with pytest.raises(socket.timeout):
            late.recv(10)
        assert server.total_received() == 4  # nothing got through upstream either
        assert proxy.bytes_up == 4
        assert proxy.active_connections == 2  # sockets kept open

        proxy.blackhole(False)
        client.settimeout(TIMEOUT)
        late.settimeout(TIMEOUT)
        assert recv_exactly(client, 4) == b"held"
        assert recv_exactly(late, 4) == b"late"
        assert roundtrip(client, b"again") == b"again"


def test_stop_reading_blocks_a_sending_client_until_resumed(make_server, connect) -> None:
    server = make_server("sink")
    with FaultProxy("127.0.0.1", server.port) as proxy:
        client = connect(proxy)
        client.sendall(b"0123456789")
        assert server.wait(lambda: server.total_received() == 10)

        proxy.stop_reading(True)
        client.settimeout(0.5)
        chunk = b"\0" * 65536
        sent = 0
        with pytest.raises(socket.timeout):
            for _ in range(1024):  # 64 MiB: far more than the socket buffers hold
                sent += client.send(chunk)
        assert 0 < sent < 1024 * len(chunk)
        assert server.total_received() == 10
        assert proxy.bytes_up == 10

        proxy.stop_reading(False)
        assert server.wait(lambda: server.total_received() == 10 + sent), (server.total_received(), sent)
        assert proxy.wait_until(lambda p: p.bytes_up == 10 + sent, TIMEOUT), proxy.bytes_up


def test_slice_keeps_bytes_identical_and_splits_segments(make_server, connect) -> None:
    server = make_server("echo")
    with FaultProxy("127.0.0.1", server.port) as proxy:
        proxy.set_slice(1)
        client = connect(proxy)
        payload = os.urandom(20000)
        assert roundtrip(client, payload) == payload

        proxy.set_slice(7)
        payload = os.urandom(5000)
        assert roundtrip(client, payload) == payload

        # With a pause between slices every byte reaches the server as its own read.
        proxy.set_slice(1, interval=0.002)
        before = len(server.recv_sizes[0])
        payload = bytes(range(100))
        assert roundtrip(client, payload) == payload
        sizes = server.recv_sizes[0][before:]
        assert sum(sizes) == 100
        assert len(sizes) >= 50, sizes

        proxy.set_slice(None)
        payload = os.urandom(100000)
        assert roundtrip(client, payload) == payload


def test_latency_delays_each_direction(make_server, connect) -> None:
    server = make_server("echo")
    with FaultProxy("127.0.0.1", server.port) as proxy:
        client = connect(proxy)
        assert roundtrip(client, b"warm") == b"warm"

        proxy.set_latency(0.15)
        start = time.monotonic()
        assert roundtrip(client, b"x") == b"x"
        assert time.monotonic() - start >= 0.3  # 0.15 up + 0.15 down

        proxy.set_latency(0.0)
        assert roundtrip(client, b"fast") == b"fast"


def test_jitter_preserves_order(make_server, connect) -> None:
    server = make_server("echo")
    with FaultProxy("127.0.0.1", server.port, seed=7) as proxy:
        proxy.set_latency(0.05, jitter=0.05)
        client = connect(proxy)
        messages = [f"message-{i:04d};".encode() for i in range(300)]
        for message in messages:
            client.send(message)
        expected = b"".join(messages)
        assert recv_exactly(client, len(expected)) == expected
        assert bytes(server.received[0]) == expected


def test_bandwidth_throttles_and_can_be_lifted(make_server, connect) -> None:
    payload = os.urandom(30000)
    server = make_server("source", payload)
    with FaultProxy("127.0.0.1", server.port) as proxy:
        proxy.set_bandwidth(60000)
        start = time.monotonic()
        client = connect(proxy)
        assert recv_exactly(client, len(payload)) == payload
        assert time.monotonic() - start >= 0.45  # 30 kB at 60 kB/s, first 1.2 kB quantum free

        proxy.set_bandwidth(None)
        second = connect(proxy)
        assert recv_exactly(second, len(payload)) == payload
        assert proxy.wait_until(lambda p: p.bytes_down == 2 * len(payload), TIMEOUT), proxy.bytes_down


def test_limit_data_down_cuts_after_exactly_n_bytes_once(make_server, connect) -> None:
    payload = os.urandom(200000)
    server = make_server("source", payload)
    with FaultProxy("127.0.0.1", server.port) as proxy:
        proxy.limit_data(12345, "down")
        client = connect(proxy)
        got, error = read_until_closed(client)
        assert len(got) == 12345
        assert got == payload[:12345]
        assert isinstance(error, ConnectionResetError)
        assert proxy.bytes_down == 12345
        assert server.wait(lambda: server.finished == 1)

        # One-shot: the next connection gets everything.
        second = connect(proxy)
        assert recv_exactly(second, len(payload)) == payload


def test_limit_data_up_cuts_mid_stream(make_server, connect) -> None:
    server = make_server("sink")
    data = os.urandom(50000)
    with FaultProxy("127.0.0.1", server.port) as proxy:
        proxy.limit_data(1000, direction="up")
        client = connect(proxy)
        try:
            client.sendall(data)
        except OSError:  # the reset may already be there
            pass
        assert server.wait(lambda: server.finished == 1)
        assert bytes(server.received[0]) == data[:1000]
        assert any(isinstance(e, ConnectionResetError) for e in server.errors)
        _, error = read_until_closed(client)
        assert isinstance(error, (ConnectionResetError, BrokenPipeError))


def test_refuse_gives_connection_refused_and_recovers_on_same_port(make_server, connect) -> None:
    server = make_server("echo")
    with FaultProxy("127.0.0.1", server.port) as proxy:
        address = proxy.address
        established = connect(proxy)
        assert roundtrip(established, b"before") == b"before"

        proxy.refuse(True)
        proxy.refuse(True)  # idempotent
        for _ in range(3):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=TIMEOUT).close()
        assert roundtrip(established, b"during") == b"during"  # existing connections unaffected

        proxy.refuse(False)
        assert proxy.address == address
        again = connect(proxy)
        assert roundtrip(again, b"after") == b"after"
        assert proxy.connections_accepted == 2


def test_hang_accept_accepts_but_never_answers(make_server, connect) -> None:
    server = make_server("echo")
    with FaultProxy("127.0.0.1", server.port) as proxy:
        proxy.hang_accept(True)
        held = connect(proxy)  # TCP connect succeeds ...
        assert proxy.wait_for_connections(1, TIMEOUT)
        held.sendall(b"hello")
        held.settimeout(SILENCE)
        with pytest.raises(socket.timeout):  # ... but nothing ever comes back
            held.recv(10)
        assert server.accepted == 0  # upstream never contacted

        gone = connect(proxy)  # a client that gives up is noticed and cleaned up
        assert proxy.wait_for_connections(2, TIMEOUT)
        gone.close()
        assert proxy.wait_until(lambda p: p.active_connections == 1, TIMEOUT)

        proxy.hang_accept(False)
        held.settimeout(TIMEOUT)
        with pytest.raises(ConnectionResetError):
            held.recv(10)
        fresh = connect(proxy)
        assert roundtrip(fresh, b"works") == b"works"
        assert server.accepted == 1


def test_upstream_down_resets_the_client(connect) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        dead_port = placeholder.getsockname()[1]
    with FaultProxy("127.0.0.1", dead_port) as proxy:
        try:
            client = connect(proxy)
        except ConnectionResetError:  # the reset can beat connect()'s own SO_ERROR check
            got, error = b"", ConnectionResetError()
        else:
            got, error = read_until_closed(client)
        assert got == b""
        assert isinstance(error, ConnectionResetError)
        assert proxy.wait_until(lambda p: p.active_connections == 0, TIMEOUT)
        assert proxy.connections_accepted == 1


def test_concurrent_clients(make_server, connect) -> None:
    server = make_server("echo")
    results: list[bool] = []
    lock = threading.Lock()
    with FaultProxy("127.0.0.1", server.port) as proxy:
        clients = [connect(proxy) for _ in range(8)]

        def work(sock: socket.socket) -> None:
            payload = os.urandom(65536)
            ok = roundtrip(sock, payload) == payload
            with lock:
                results.append(ok)

        threads = [threading.Thread(target=work, args=(c,), name=f"test-client-{i}") for i, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        assert results == [True] * 8
        assert proxy.connections_accepted == 8
        assert proxy.wait_until(lambda p: p.bytes_up == p.bytes_down == 8 * 65536, TIMEOUT)


def test_close_ends_threads_and_sockets(make_server) -> None:
    server = make_server("echo")
    baseline_threads = threading.active_count()
    baseline_fds = open_fds()

    proxy = FaultProxy("127.0.0.1", server.port)
    assert [t.name for t in proxy_threads()] == [f"magk-proxy-{proxy.port}"]
    assert all(t.daemon for t in proxy_threads())
    active = socket.create_connection(proxy.address, timeout=TIMEOUT)
    silent = socket.create_connection(proxy.address, timeout=TIMEOUT)
    held = None
    try:
        assert roundtrip(active, b"x") == b"x"
        assert proxy.wait_for_connections(2, TIMEOUT)
        assert server.wait(lambda: server.accepted == 2)
        proxy.blackhole(True)
        silent.sendall(b"y")
        proxy.hang_accept(True)
        held = socket.create_connection(proxy.address, timeout=TIMEOUT)
        assert proxy.wait_for_connections(3, TIMEOUT)
        assert proxy.active_connections == 3

        proxy.close()
        proxy.close()  # idempotent
        assert not proxy_threads()
        with pytest.raises(ConnectionResetError):
            active.recv(10)
        with pytest.raises(RuntimeError):
            proxy.reset_peer()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=TIMEOUT).close()
    finally:
        for sock in (active, silent, held):
            if sock is not None:
                sock.close()

    assert server.wait(lambda: server.finished == 2)  # upstream side of both connections went away
    assert wait_until(lambda: threading.active_count() == baseline_threads), threading.enumerate()
    assert wait_until(lambda: open_fds() == baseline_fds), (open_fds(), baseline_fds)


def test_wait_for_connections_times_out_then_succeeds(make_server, connect) -> None:
    server = make_server("echo")
    with FaultProxy("127.0.0.1", server.port) as proxy:
        start = time.monotonic()
        assert proxy.wait_for_connections(1, timeout=0.1) is False
        assert time.monotonic() - start >= 0.1
        connect(proxy)
        assert proxy.wait_for_connections(1, timeout=TIMEOUT) is True


def test_url_rewrites_host_and_port_only() -> None:
    with FaultProxy("127.0.0.1", 9) as proxy:
        port = proxy.port
        assert proxy.url("ws://example.com:8080/ws?token=1#f") == f"ws://127.0.0.1:{port}/ws?token=1#f"
        assert proxy.url("https://127.0.0.1/api/v1") == f"https://127.0.0.1:{port}/api/v1"
        assert proxy.url("wss://user:pw@[::1]:443/x") == f"wss://user:pw@127.0.0.1:{port}/x"
        assert proxy.url("http://localhost:8000") == f"http://127.0.0.1:{port}"
        with pytest.raises(ValueError):
            proxy.url("ftp://127.0.0.1/file")


@pytest.mark.parametrize(
    ("host", "kwargs"),
    [("10.1.2.3", {}), ("example.com", {}), ("127.0.0.1", {"listen_host": "0.0.0.0"})],
)
def test_only_loopback_addresses(host: str, kwargs: dict) -> None:
    before = open_fds()
    with pytest.raises(ValueError):
        FaultProxy(host, 80, **kwargs)
    assert open_fds() == before
    assert not proxy_threads()


def test_control_arguments_are_validated() -> None:
    with FaultProxy("127.0.0.1", 9) as proxy:
        with pytest.raises(ValueError):
            proxy.set_slice(0)
        with pytest.raises(ValueError):
            proxy.set_bandwidth(0)
        with pytest.raises(ValueError):
            proxy.set_latency(-1)
        with pytest.raises(ValueError):
            proxy.limit_data(-1)
        with pytest.raises(ValueError):
            proxy.limit_data(10, direction="sideways")
