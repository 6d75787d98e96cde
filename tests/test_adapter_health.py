"""Backend health through the adapter: GET /health against the reference backend (full and minimal
shapes, HTTP statuses, auth, TLS) and a raw server (a non-JSON 500, a server that never answers), and
the background poller (its interval, its thread, its end at disconnect)."""

from __future__ import annotations

import datetime
import ssl
import threading
import time
from typing import Any, Dict, Iterator

import pytest
from adapter_helpers import HealthServer, adapter_threads, eventually, make_adapter
from timings import well_before

from magk_client import AuthError, MagkTimeoutError, NetworkError, ProtocolError
from magk_client.testing import Backend
from magk_client.testing.raw import Conn, Request, reply

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    yield
    eventually(lambda: adapter_threads() == [], 10.0, "adapter threads to end")


def test_health_full_shape(magk_backend: Backend) -> None:
    magk_backend.set_health("degraded", database=False)
    with make_adapter(magk_backend.base_url) as adapter:
        health = adapter.get_backend_health()
        assert health.status == "degraded" and not health.is_healthy
        assert health.services == {"database": False, "messaging": True, "workflows": True}
        assert set(health.metrics) == {"activeConnections", "queueLength", "responseTime"}
        assert health.metrics["activeConnections"] == 1
        status = adapter.get_status()
        assert status.backend_health == health and status.backend_health_error is None


def test_health_minimal_shape_and_without_a_connection(magk_backend: Backend) -> None:
    magk_backend.set_health("healthy", minimal=True)
    adapter = make_adapter(magk_backend.base_url)  # never connected: a one-off request
    health = adapter.get_backend_health()
    assert health.is_healthy and health.service == "magk-reference-backend"
    assert health.services == {} and health.metrics == {}
    assert adapter_threads() == []


@pytest.mark.parametrize(("status", "minimal", "expected"), [("healthy", False, "unhealthy"),
                                                            ("degraded", True, "degraded")])
def test_health_a_500_answer_is_never_healthy(magk_backend: Backend, status: str, minimal: bool, expected: str) -> None:
    magk_backend.set_health(status, minimal=minimal, http_status=500)
    health = make_adapter(magk_backend.base_url).get_backend_health()
    assert health.status == expected and not health.is_healthy
    assert health.service == "magk-reference-backend"


def test_health_a_500_answer_that_is_not_json_is_unhealthy() -> None:
    with HealthServer(reply(500, b"<html>oops</html>", [("Content-Type", "text/html")])) as fake:
        health = make_adapter(fake.url).get_backend_health()
    assert health.status == "unhealthy" and not health.is_healthy


def test_health_refusals_and_failures_are_errors(magk_backend: Backend) -> None:
    magk_backend.set_health("healthy", http_status=404)
    with pytest.raises(ProtocolError, match="404"):
        make_adapter(magk_backend.base_url).get_backend_health()
    magk_backend.set_health()
    with Backend(token="tok-health-1") as locked:
        with pytest.raises(AuthError):
            make_adapter(locked.base_url).get_backend_health()
        assert make_adapter(locked.base_url, auth_token="tok-health-1").get_backend_health().is_healthy
    url = magk_backend.base_url
    magk_backend.stop()
    with pytest.raises(NetworkError):
        make_adapter(url).get_backend_health()


def test_health_timeout_and_a_hanging_check_does_not_hold_disconnect() -> None:
    release = threading.Event()

    def hang(conn: Conn, req: Request) -> None:
        release.wait(30)

    with HealthServer(hang) as fake:
        try:
            began = time.monotonic()
            with pytest.raises(MagkTimeoutError):
                make_adapter(fake.url).get_backend_health(timeout=0.3)
            assert time.monotonic() - began >= 0.3
            # a check waits for its answer up to message_timeout_ms
            adapter = make_adapter(fake.url, "eventsource", connection={"message_timeout_ms": 20000},
                                   enable_health_check=True, health_check_interval_ms=10000)
            adapter.connect(10)
            fake.raw.wait_requests(3)  # the one-off check, the stream, then the first poll, which hangs
            began = time.monotonic()
            adapter.disconnect()
            assert time.monotonic() - began < well_before(20.0)  # the check in progress was aborted
            assert adapter_threads() == []
        finally:
            release.set()


def test_health_polling_every_interval_reported_in_status_and_stopped_on_disconnect(magk_backend: Backend) -> None:
    adapter = make_adapter(magk_backend.base_url, enable_health_check=True, health_check_interval_ms=50)
    adapter.connect(10)
    try:
        names = adapter_threads()
        assert any(name.endswith("-health") for name in names)
        magk_backend.wait_until(lambda: magk_backend.counters.get("http_requests", 0) >= 3, 10, "3 health checks")
        first = adapter.get_status()
        assert first.backend_health is not None and first.backend_health.is_healthy
        magk_backend.set_health("unhealthy", messaging=False)
        eventually(lambda: (adapter.get_status().backend_health or first.backend_health).status == "unhealthy",
                   10, "the poller to see the change")
        checked_at = adapter.get_status().backend_health_checked_at
        assert checked_at is not None and checked_at >= first.backend_health_checked_at  # type: ignore[operator]
    finally:
        adapter.disconnect()
    assert not any(name.endswith("-health") for name in adapter_threads())
    requests_after = magk_backend.counters.get("http_requests", 0)
    assert adapter.get_status().backend_health is not None  # the latest result stays
    adapter.connect(10)  # polling starts again with the next connection
    try:
        magk_backend.wait_until(lambda: magk_backend.counters.get("http_requests", 0) > requests_after, 10, "a new check")
    finally:
        adapter.close()


def test_health_polling_errors_are_reported_and_polling_can_be_off(magk_backend: Backend) -> None:
    magk_backend.set_health(http_status=403)
    with make_adapter(magk_backend.base_url, "eventsource", enable_health_check=True, health_check_interval_ms=50) as adapter:
        eventually(lambda: adapter.get_status().backend_health_error is not None, 10, "a failed check")
        assert "403" in (adapter.get_status().backend_health_error or "")
        magk_backend.set_health()
        eventually(lambda: adapter.get_status().backend_health_error is None, 10, "a good check")
    magk_backend.clear_records()
    with make_adapter(magk_backend.base_url, enable_health_check=False) as adapter:
        assert adapter.start_workflow("wf-1").success
        assert not any(name.endswith("-health") for name in adapter_threads())
        assert magk_backend.counters.get("http_requests", 0) == 0
        assert adapter.get_status().backend_health is None


@pytest.fixture(scope="module")
def tls() -> Dict[str, Any]:
    trustme = pytest.importorskip("trustme")
    ca, other_ca = trustme.CA(), trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost", not_after=datetime.datetime.now(datetime.timezone.utc)
                  + datetime.timedelta(days=1)).configure_cert(ctx)
    return {"ca": ca, "other_ca": other_ca, "server": ctx}


def test_health_and_post_commands_use_the_transports_tls_settings(tls: Dict[str, Any], tmp_path: Any) -> None:
    right, wrong = tmp_path / "right.pem", tmp_path / "wrong.pem"
    tls["ca"].cert_pem.write_to_path(str(right))
    tls["other_ca"].cert_pem.write_to_path(str(wrong))
    with Backend(ssl_context=tls["server"], token="tok-tls-secret") as server:
        base = f"https://localhost:{server.port}"
        with make_adapter(base, "eventsource", connection={"ca_bundle": str(right)}, auth_token="tok-tls-secret") as adapter:
            assert adapter.get_backend_health().is_healthy
            response = adapter.start_workflow("wf-1")  # POST /commands over TLS
            assert response.success and server.command_counts[response.request_id] == 1
        refused = make_adapter(base, connection={"ca_bundle": str(wrong)}, auth_token="tok-tls-secret")
        with pytest.raises(NetworkError, match="certificate verification failed") as info:
            refused.get_backend_health()
        assert info.value.terminal and "tok-tls-secret" not in str(info.value)
