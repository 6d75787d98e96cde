"""Resume by Last-Event-ID on WebSocket and SSE, resume gaps, and exactly-once under concurrent publishing."""

from __future__ import annotations

import threading
from typing import Callable

from conftest import RawSSE, RawWS

from magk_client.testing import Backend


def publish_n(backend: Backend, n: int) -> list:
    return backend.publish_many([{"type": "node_log", "workflowId": "wf-1", "data": {"i": i}} for i in range(n)])


def test_ws_resume_replays_after_id_then_live(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ids = publish_n(backend, 10)
    ws = ws_client(backend.websocket_url, header=[f"Last-Event-ID: {ids[3]}"])
    ack = ws.recv_json()
    assert ack["type"] == "subscription_ack" and ack["data"]["replayed"] == 6
    assert [ws.recv_json()["id"] for _ in range(6)] == ids[4:]
    live = backend.publish({"type": "node_log", "data": {}})
    assert ws.recv_json()["id"] == live
    assert backend.connections_log[-1]["last_event_id"] == ids[3]


def test_ws_resume_at_latest_replays_nothing(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ids = publish_n(backend, 3)
    ws = ws_client(backend.websocket_url, header=[f"Last-Event-ID: {ids[-1]}"])
    assert ws.recv_json()["data"]["replayed"] == 0


def test_sse_resume_and_cross_transport(backend: Backend, sse_client: Callable[..., RawSSE], ws_client: Callable[..., RawWS]) -> None:
    ids = publish_n(backend, 5)
    sse = sse_client(backend.event_source_url, headers={"Last-Event-ID": ids[1]})
    assert sse.next_event()[1]["data"]["replayed"] == 3  # type: ignore[index]
    got = [sse.next_event() for _ in range(3)]
    assert [g[0] for g in got] == ids[2:]  # type: ignore[index]
    assert [g[1]["id"] for g in got] == ids[2:]  # type: ignore[index]
    # the last id seen on SSE resumes a WebSocket the same way
    more = publish_n(backend, 2)
    ws = ws_client(backend.websocket_url, header=[f"Last-Event-ID: {ids[-1]}"])
    assert ws.recv_json()["data"]["replayed"] == 2
    assert [ws.recv_json()["id"] for _ in range(2)] == more


def test_sse_last_event_id_query_parameter(backend: Backend, sse_client: Callable[..., RawSSE]) -> None:
    ids = publish_n(backend, 4)
    sse = sse_client(backend.event_source_url + f"?lastEventId={ids[2]}")
    assert sse.next_event()[1]["data"]["replayed"] == 1  # type: ignore[index]
    assert sse.next_event()[0] == ids[3]  # type: ignore[index]


def test_unknown_id_gives_resume_gap_first(backend: Backend, ws_client: Callable[..., RawWS], sse_client: Callable[..., RawSSE]) -> None:
    publish_n(backend, 3)
    ws = ws_client(backend.websocket_url, header=["Last-Event-ID: someone-elses-id"])
    gap = ws.recv_json()
    assert gap["type"] == "subscription_error" and "id" not in gap
    assert gap["data"] == {"code": "resume_gap", "lastEventId": "someone-elses-id"}
    assert ws.recv_json()["data"]["replayed"] == 0
    sse = sse_client(backend.event_source_url, headers={"Last-Event-ID": "e-999999"})
    event_id, first = sse.next_event()  # type: ignore[misc]
    assert event_id is None and first["data"]["code"] == "resume_gap"
    assert backend.counters["resume_gaps"] == 2


def test_expired_id_gap_then_everything_still_held(ws_client: Callable[..., RawWS]) -> None:
    with Backend(replay_size=5) as backend:
        ids = publish_n(backend, 12)
        ws = ws_client(backend.websocket_url, header=[f"Last-Event-ID: {ids[2]}"])
        assert ws.recv_json()["data"]["code"] == "resume_gap"
        assert ws.recv_json()["data"]["replayed"] == 5
        assert [ws.recv_json()["id"] for _ in range(5)] == ids[-5:]


def test_expire_replay_log(backend: Backend, ws_client: Callable[..., RawWS]) -> None:
    ids = publish_n(backend, 3)
    backend.expire_replay_log()
    assert backend.logged_events() == []
    ws = ws_client(backend.websocket_url, header=[f"Last-Event-ID: {ids[0]}"])
    assert ws.recv_json()["data"] == {"code": "resume_gap", "lastEventId": ids[0]}
    assert ws.recv_json()["data"]["replayed"] == 0
    # the counter carries on: no id is ever reused
    assert backend.publish({"type": "node_log", "data": {}}) == "e-4"


def test_no_ack_option(ws_client: Callable[..., RawWS]) -> None:
    with Backend(send_ack=False) as backend:
        ids = publish_n(backend, 2)
        ws = ws_client(backend.websocket_url, header=[f"Last-Event-ID: {ids[0]}"])
        assert ws.recv_json()["id"] == ids[1]


def test_exactly_once_in_order_while_publishing_during_handshake() -> None:
    """Replay and live events never overlap or leave a hole, however the handshake and publishing race."""
    with Backend(replay_size=10**7) as backend:
        check_exactly_once(backend)


def check_exactly_once(backend: Backend) -> None:
    publish_n(backend, 50)
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            publish_n(backend, 20)

    thread = threading.Thread(target=pump)
    thread.start()
    try:
        for _ in range(5):
            last = backend.last_event_id
            ws = RawWS(backend.websocket_url, header=[f"Last-Event-ID: {last}"])
            sse = RawSSE(backend.event_source_url, headers={"Last-Event-ID": str(last)})
            try:
                first = int(str(last)[2:])
                assert ws.recv_json()["type"] == "subscription_ack"
                got = [int(ws.recv_json()["id"][2:]) for _ in range(300)]
                assert got == list(range(first + 1, first + 301))
                assert sse.next_event()[1]["type"] == "subscription_ack"  # type: ignore[index]
                got_sse = [int(sse.next_event()[0][2:]) for _ in range(300)]  # type: ignore[index]
                assert got_sse == list(range(first + 1, first + 301))
            finally:
                ws.close()
                sse.close()
    finally:
        stop.set()
        thread.join()


def test_replay_log_unit() -> None:
    from magk_client.testing import ReplayLog

    log = ReplayLog(maxlen=3)
    assert log.after("e-0") == (False, [])
    for i in range(1, 6):
        log.append(f"e-{i}", {}, str(i))
    assert [e.id for e in log.entries()] == ["e-3", "e-4", "e-5"]
    assert [e.id for e in log.after("e-3")[1]] == ["e-4", "e-5"] and log.after("e-3")[0] is False
    assert log.after("e-2") == (False, log.entries())  # nothing after e-2 is missing
    gap, events = log.after("e-1")
    assert gap is True and [e.id for e in events] == ["e-3", "e-4", "e-5"]
    assert log.after("e-77") == (True, [])
    assert log.after("custom") == (True, [])
    log.expire()
    assert log.after("e-5") == (True, [])
    log.append("custom", {}, "x")
    assert log.after("custom") == (False, []) and log.find("custom") is not None
