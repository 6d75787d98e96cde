"""Outbound delivery against the reference backend on 127.0.0.1 (docs/protocol.rst, Acknowledgements):
exactly once under forced drops with acks, counted loss without, wait=True, submit_message, the rate
limit, refusals, and disconnect() failing waiting senders."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional

import pytest
from adapter_helpers import eventually
from service_helpers import FAST

from magk_client import RealtimeService
from magk_client.errors import DeliveryError, DeliveryTimeout, MagkError, MessageRefusedError
from magk_client.models import SendResult
from magk_client.testing import Backend

#: the hammer: senders, seconds, seconds between forced drops (benchmarks/bench_outbound.py: 16 x 10 s)
THREADS, SECONDS, DROP_EVERY = 16, 3.0, 0.5
#: drops that must hit a live connection before a run ends (a loaded machine gets fewer per second)
MIN_DROPS = 3


def _service(backend: Backend, *, ws: bool = True, **overrides: Any) -> RealtimeService:
    options: Dict[str, Any] = dict(FAST)
    if ws:
        options.update(websocket_url=backend.websocket_url, event_source_url=None)
    else:
        options.update(websocket_url=None, event_source_url=backend.event_source_url)
    options.update(overrides)
    return RealtimeService(**options)


def _note(mid: Optional[str] = None, **data: Any) -> Dict[str, Any]:
    message: Dict[str, Any] = {"type": "client_note", "data": data}
    if mid is not None:
        message["id"] = mid
    return message


class Hammer:
    """``threads`` senders as fast as they can for ``seconds`` while the backend drops every
    connection (TCP reset) each ``drop_every`` seconds. ``accepted``: ids send_message took."""

    def __init__(
        self, service: RealtimeService, backend: Backend, threads: int, seconds: float, drop_every: float,
        *, wait: bool = False,
    ):
        self.service, self.backend, self.wait = service, backend, wait
        self.threads, self.seconds, self.drop_every = threads, seconds, drop_every
        self.accepted: List[List[str]] = [[] for _ in range(threads)]
        self.refused = 0
        self.drops = 0
        self._stop = threading.Event()
        self._dropped = threading.Condition()

    def _send(self, k: int) -> None:
        out = self.accepted[k]
        i = 0
        while not self._stop.is_set():
            mid = f"t{k}-{i}"
            i += 1
            try:
                self.service.send_message(_note(mid, k=k, i=i), wait=self.wait, timeout=60)
            except MagkError:
                self.refused += 1
                continue
            out.append(mid)

    def _drop(self) -> None:
        while not self._stop.wait(self.drop_every):  # the pace of the fault, not a synchronisation
            if self.backend.drop_connections() > 0:
                with self._dropped:
                    self.drops += 1
                    self._dropped.notify_all()

    def run(self) -> List[str]:
        workers = [threading.Thread(target=self._send, args=(k,), name=f"hammer-{k}") for k in range(self.threads)]
        workers.append(threading.Thread(target=self._drop, name="hammer-drops"))
        for t in workers:
            t.start()
        self._stop.wait(self.seconds)  # the length of the run
        # ... and on a loaded machine, until at least MIN_DROPS drops have hit a live connection
        with self._dropped:
            self._dropped.wait_for(lambda: self.drops >= MIN_DROPS, timeout=10 * self.seconds)
        self._stop.set()
        for t in workers:
            t.join(30)
            assert not t.is_alive()
        return [mid for ids in self.accepted for mid in ids]


def _settled(service: RealtimeService) -> bool:
    health = service.get_connection_health()
    return health.queue_size == 0 and health.messages_unacknowledged == 0


@pytest.mark.parametrize("ws", [True, False], ids=["websocket", "sse"])
def test_every_accepted_message_is_processed_exactly_once_under_forced_drops(ws: bool) -> None:
    """On SSE every message is a ``POST /messages``, far slower than the senders: they wait for
    their acknowledgement (``wait=True``), which keeps the backlog to one message each."""
    with Backend(pace=0.0) as backend:
        seen: List[str] = []
        service = _service(backend, ws=ws, max_queue_size=1_000_000, max_queue_bytes=1 << 30)
        service.subscribe(None, lambda m: seen.append(str(m.type)))
        with service:
            service.connect(timeout=10)
            hammer = Hammer(service, backend, THREADS, SECONDS, DROP_EVERY, wait=not ws)
            accepted = hammer.run()
            assert hammer.drops >= MIN_DROPS and hammer.refused == 0
            # acknowledged, hence processed: once nothing is queued or unacknowledged, all is there
            eventually(lambda: _settled(service), 120, "the queue and the window to empty")
            health = service.get_connection_health()
        counts = backend.processed_counts
        repeated = {m: n for m, n in counts.items() if n != 1}
        assert not repeated, f"{len(repeated)} ids processed more than once"
        assert set(accepted) <= set(counts)
        assert health.messages_acknowledged == len(accepted)
        assert not health.outbound_at_most_once
        assert health.queue_dropped == 0 and health.messages_unconfirmed == 0
        assert health.total_reconnects >= 3
        assert health.messages_sent >= len(accepted)
        assert "ack" not in seen


def test_without_acks_the_loss_is_counted_not_hidden() -> None:
    with Backend(pace=0.0, acks=False) as backend:
        service = _service(backend, max_queue_size=1_000_000, max_queue_bytes=1 << 30)
        with service:
            service.connect(timeout=10)
            accepted = Hammer(service, backend, THREADS, SECONDS, DROP_EVERY).run()
            # After the drops: one more message on a connection that stays. What it follows on that
            # connection is processed before it; what went on the broken ones arrived or not by now.
            assert service.send_message(_note("sentinel"), wait=True, timeout=30) is False  # written, no ack
            backend.wait_for_processed(["sentinel"], timeout=60)
            health = service.get_connection_health()
        processed = backend.processed_counts
        lost = [m for m in accepted if m not in processed]
        assert health.outbound_at_most_once
        assert health.messages_acknowledged == 0 and health.messages_resent == 0
        assert health.messages_unconfirmed > 0
        assert len(lost) <= health.messages_unconfirmed, "lost messages the client did not count"


def test_wait_true_returns_once_acknowledged(backend: Backend) -> None:
    service = _service(backend)
    with service:
        service.connect(timeout=10)
        for _ in range(5):
            assert service.send_message(_note(), wait=True, timeout=10) is True
        health = service.get_connection_health()
    assert health.messages_acknowledged == 5 and health.messages_sent == 5
    assert health.messages_unacknowledged == 0 and not health.outbound_at_most_once
    assert backend.counters["acks_sent"] == 5


@pytest.mark.parametrize("how", ["acks_off", "no_subscription_ack"])
def test_wait_true_over_a_server_without_acks_returns_false_once_written(how: str) -> None:
    options: Dict[str, Any] = {"acks": False} if how == "acks_off" else {"send_ack": False}
    with Backend(pace=0.0, **options) as backend:
        service = _service(backend, connection_timeout_ms=500)
        with service:
            service.connect(timeout=10)
            assert service.send_message(_note("m1"), wait=True, timeout=10) is False
            backend.wait_for_processed(["m1"], timeout=10)
            health = service.get_connection_health()
    assert health.outbound_at_most_once and health.messages_acknowledged == 0


def test_wait_true_times_out_with_a_clear_error_and_keeps_the_message(backend: Backend) -> None:
    service = _service(backend)
    with service:
        service.connect(timeout=10)
        service.send_message(_note(), wait=True, timeout=10)  # the server has said it acknowledges
        backend.go_silent()
        with pytest.raises(DeliveryTimeout, match=r"not acknowledged within 0\.3 s") as info:
            service.send_message(_note("quiet"), wait=True, timeout=0.3)
        assert info.value.message_id == "quiet" and isinstance(info.value, TimeoutError)
        assert service.get_connection_health().messages_unacknowledged == 1


def test_disconnect_fails_waiting_senders_at_once(backend: Backend) -> None:
    service = _service(backend)
    service.connect(timeout=10)
    service.send_message(_note(), wait=True, timeout=10)
    backend.go_silent()
    errors: List[BaseException] = []

    def wait_long() -> None:
        try:
            service.send_message(_note("stuck"), wait=True, timeout=60)
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=wait_long, name="waiting-sender")
    sender.start()
    future = service.submit_message(_note("stuck-too"))
    eventually(lambda: service.get_connection_health().messages_unacknowledged == 2, 10, "both in flight")
    started = time.monotonic()
    service.disconnect()
    sender.join(30)
    assert not sender.is_alive() and time.monotonic() - started < 30  # far below the 60 s wait
    assert len(errors) == 1 and isinstance(errors[0], DeliveryError)
    assert errors[0].outcome == "cancelled" and "disconnect()" in str(errors[0])
    with pytest.raises(DeliveryError, match="disconnect"):
        future.result(timeout=5)
    service.close()


def test_submit_message_future_completes_on_the_dispatcher(backend: Backend) -> None:
    service = _service(backend)
    future = service.submit_message(_note("f1"))  # queued: not connected yet
    threads: List[str] = []
    done = threading.Event()

    def on_done(_: Any) -> None:
        threads.append(threading.current_thread().name)
        done.set()

    future.add_done_callback(on_done)
    with service:
        service.connect(timeout=10)
        assert future.result(timeout=10) == SendResult("f1", True)
        assert done.wait(10)
    assert threads and threads[0].startswith("magk-dispatcher")


def test_a_message_too_big_for_the_server_is_refused_not_resent() -> None:
    with Backend(pace=0.0, max_body_size=2048) as backend:
        service = _service(backend)
        with service:
            service.connect(timeout=10)
            with pytest.raises(MessageRefusedError, match="1009"):
                service.send_message(_note("big", pad="x" * 5000), wait=True, timeout=10)
            # a protocol error: sends wait for the reconnect (queue_offline is not its strategy)
            eventually(lambda: service.is_connected and service.get_connection_health().total_reconnects == 1)
            assert service.send_message(_note("small"), wait=True, timeout=10) is True
            health = service.get_connection_health()
        assert health.messages_refused == 1 and health.messages_unacknowledged == 0
        assert "big" not in backend.processed_counts


def test_sse_413_is_a_refusal_and_the_stream_stays() -> None:
    with Backend(pace=0.0, max_body_size=2048) as backend:
        service = _service(backend, ws=False)
        with service:
            service.connect(timeout=10)
            with pytest.raises(MessageRefusedError, match="413"):
                service.send_message(_note("big", pad="x" * 5000))
            assert service.send_message(_note("small"), wait=True, timeout=10) is True
            health = service.get_connection_health()
        assert health.total_reconnects == 0 and health.messages_refused == 1


def test_the_rate_limit_holds_within_ten_percent_over_two_seconds(backend: Backend) -> None:
    rate, n = 150.0, 420
    service = _service(backend, max_messages_per_second=rate)
    burst = service.config.max_message_burst or max(1, int(rate / 10))
    with service:
        service.connect(timeout=10)
        ids = [f"r{i}" for i in range(n)]
        for mid in ids:
            service.send_message(_note(mid))
        backend.wait_for_processed(ids, timeout=30)
        health = service.get_connection_health()
    times = sorted(m.received_at for m in backend.received_messages if m.message.get("id") in set(ids))
    first = times[0]
    in_two = sum(1 for t in times if t - first <= 2.0)
    # never faster than the bucket allows (any 2 s window), and not starved either
    most = max(sum(1 for t in times[i:] if t - start <= 2.0) for i, start in enumerate(times))
    assert most <= 1.1 * (2 * rate + burst)
    assert in_two >= 0.9 * 2 * rate
    assert health.rate_limit_waits > 0


def test_blocking_sends_wait_for_a_token(backend: Backend) -> None:
    service = _service(backend, max_messages_per_second=20.0, max_message_burst=1)
    with service:
        service.connect(timeout=10)
        started = time.monotonic()
        for _ in range(21):
            assert service.send_message(_note(), wait=True, timeout=10) is True
        elapsed = time.monotonic() - started
        health = service.get_connection_health()
    assert elapsed >= 0.95  # 20 intervals of 1/20 s after the first token
    assert health.rate_limit_waits >= 19


def test_a_refusal_naming_the_id_fails_its_waiter(backend: Backend) -> None:
    """``subscription_error`` ``bad_message`` naming the id is final for it: never sent again."""
    service = _service(backend)
    with service:
        service.connect(timeout=10)
        service.send_message(_note(), wait=True, timeout=10)
        backend.go_silent()  # the ack of the next message is never sent
        future = service.submit_message(_note("odd"))
        backend.wait_for_processed(["odd"], timeout=10)  # processed, its ack dropped by the silence
        backend.go_silent(False)
        backend.publish_raw('{"type": "subscription_error", "data": {"code": "bad_message", "message": "no", "id": "odd"}}')
        with pytest.raises(MessageRefusedError, match="refused message odd: no") as info:
            future.result(timeout=10)
        assert info.value.message_id == "odd"
        health = service.get_connection_health()
    assert health.messages_refused == 1 and health.messages_unacknowledged == 0


def test_a_full_window_queues_instead_of_giving_up(backend: Backend) -> None:
    """Flow control: with ``max_queue_size`` messages unacknowledged, new ones wait in the queue; none
    is given up, and after the connection that lost their acks is gone all arrive exactly once."""
    service = _service(backend, max_queue_size=5)
    with service:
        service.connect(timeout=10)
        service.send_message(_note("first"), wait=True, timeout=10)
        backend.go_silent()  # processed, their acks dropped
        ids = [f"w{i}" for i in range(8)]
        written = [service.send_message(_note(mid)) for mid in ids]
        assert written == [True] * 5 + [False] * 3  # the window holds 5: the rest queue
        health = service.get_connection_health()
        assert health.messages_unacknowledged == 5 and health.queue_size == 3
        backend.wait_for_processed(ids[:5], timeout=10)
        backend.go_silent(False)
        backend.drop_connections()  # the acks went down with the connection
        eventually(lambda: _settled(service), 30, "everything acknowledged after the reconnect")
        health = service.get_connection_health()
    counts = backend.processed_counts
    assert [counts.get(mid) for mid in ids] == [1] * 8
    assert health.messages_unconfirmed == 0 and health.queue_dropped == 0
    assert health.messages_resent == 5 and health.total_reconnects >= 1


def test_update_config_changes_the_rate_limit_at_once(backend: Backend) -> None:
    service = _service(backend)
    with service:
        service.connect(timeout=10)
        service.update_config(max_messages_per_second=20.0, max_message_burst=1)
        started = time.monotonic()
        for _ in range(11):
            service.send_message(_note(), wait=True, timeout=10)
        assert time.monotonic() - started >= 0.45  # 10 intervals of 1/20 s
        waits = service.get_connection_health().rate_limit_waits
        assert waits >= 9
        service.update_config(max_messages_per_second=None)
        assert all(service.send_message(_note()) for _ in range(50))  # no limit: all written at once
        assert service.get_connection_health().rate_limit_waits == waits
