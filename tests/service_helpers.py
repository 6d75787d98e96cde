"""Helpers shared by the service-level fault tests (test_faults_ws.py, test_faults_sse.py, test_service_behaviour.py)."""

from __future__ import annotations

import datetime
import ssl
import threading
import time
import weakref
from typing import Any, Dict, Iterator, List, Optional

import pytest
from checks import open_fds, rss_bytes  # noqa: F401 - re-exported for tests that import them from here
from timings import FAST  # noqa: F401 - re-exported for tests that import it from here

from magk_client import ConnectionState, MessageType, RealtimeMessage, RealtimeService
from magk_client.testing import Backend
from magk_client.testing.proxy import FaultProxy
from magk_client.testing.recorder import StateRecorder

SDK_THREADS = ("magk-reader", "magk-supervisor", "magk-dispatcher")
#: services of the running test (weakly: the row-31 test drops them)
made: List[weakref.ref[RealtimeService]] = []


def build_service(defaults: Dict[str, Any], overrides: Dict[str, Any]) -> RealtimeService:
    options = dict(defaults)
    options.update(overrides)
    service = RealtimeService(**options)
    made.append(weakref.ref(service))
    return service


def sdk_threads() -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(SDK_THREADS))


def wait_threads_gone(timeout: float = 5.0, *, keep_dispatcher: bool = False) -> None:
    names = ("magk-reader", "magk-supervisor") if keep_dispatcher else SDK_THREADS
    deadline = time.monotonic() + timeout
    for t in threading.enumerate():
        if t.name.startswith(names):
            t.join(max(0.0, deadline - time.monotonic()))
    assert not [n for n in sdk_threads() if n.startswith(names)]


def log_events(n: int, start: int = 0, pad: str = "") -> List[Dict[str, Any]]:
    return [{"type": "node_log", "workflowId": "wf-1", "data": {"i": i, "pad": pad}} for i in range(start, start + n)]


def event_ids(messages: List[RealtimeMessage]) -> List[str]:
    return [m.id for m in messages if m.id and m.type not in ("subscription_ack", "subscription_error")]


def workflow_done(message: RealtimeMessage) -> bool:
    """The last event of a workflow run (completed or failed)."""
    return message.type == MessageType.WORKFLOW_EVENT and message.data.get("type") in (
        "workflow_completed",
        "workflow_failed",
    )


def times_of(states: StateRecorder, state: ConnectionState) -> List[float]:
    return [t for (s, _), t in zip(states.items, states.times) if s is state]


def errors_of(states: StateRecorder, state: ConnectionState) -> List[Optional[BaseException]]:
    return [e for s, e in states.items if s is state]


@pytest.fixture(autouse=True)
def sdk_threads_back_to_baseline() -> Iterator[None]:
    """After each test no SDK thread is left; a failed test's services are disconnected so that its
    failure does not spill into the next tests."""
    made.clear()
    yield
    try:
        wait_threads_gone()
    finally:
        for ref in made:
            leftover = ref()
            if leftover is not None:
                leftover.disconnect(timeout=2.0)
        made.clear()


@pytest.fixture()
def server(magk_backend: Backend) -> Backend:
    """The plugin's ``magk_backend`` under the name these fault tests use (hundreds of uses)."""
    return magk_backend


@pytest.fixture()
def proxy(magk_proxy: FaultProxy) -> FaultProxy:
    """The plugin's ``magk_proxy`` (in front of ``server``)."""
    return magk_proxy


@pytest.fixture(scope="module")
def tls() -> Dict[str, Any]:
    """Server TLS contexts of one CA: ``good`` (127.0.0.1, localhost), ``mismatch`` (another name),
    ``expired``; and ``ca``, ``other_ca`` (trustme CAs)."""
    trustme = pytest.importorskip("trustme")
    ca, other_ca = trustme.CA(), trustme.CA()

    def server_ctx(cert: Any) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        return ctx

    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "ca": ca,
        "other_ca": other_ca,
        "good": server_ctx(ca.issue_cert("127.0.0.1", "localhost")),
        "mismatch": server_ctx(ca.issue_cert("other.example")),
        "expired": server_ctx(ca.issue_cert("127.0.0.1", not_before=now - datetime.timedelta(days=30),
                                            not_after=now - datetime.timedelta(days=1))),
    }


@pytest.fixture()
def ca_files(tls: Dict[str, Any], tmp_path: Any) -> Dict[str, str]:
    right, wrong = tmp_path / "right.pem", tmp_path / "wrong.pem"
    tls["ca"].cert_pem.write_to_path(str(right))
    tls["other_ca"].cert_pem.write_to_path(str(wrong))
    return {"right": str(right), "wrong": str(wrong)}
