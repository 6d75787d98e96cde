"""The pytest plugin our users get: backend, proxy and service-factory fixtures."""

from __future__ import annotations

from typing import Callable

from magk_client import ConnectionState, RealtimeService
from magk_client.testing import Backend, FaultProxy, Recorder, StateRecorder

pytest_plugins = ["magk_client.testing.pytest_plugin"]


def test_service_through_the_proxy_survives_a_reset(
    magk_backend: Backend, magk_proxy: FaultProxy, magk_service_factory: Callable[..., RealtimeService]
) -> None:
    service = magk_service_factory(via_proxy=True)
    states = StateRecorder()
    got: Recorder = Recorder()
    service.on_connection_state_change(states)
    service.subscribe("node_log", got)
    acks: Recorder = Recorder()
    service.subscribe("subscription_ack", acks)
    service.connect(timeout=5)
    assert magk_proxy.wait_for_connections(1, 5)
    acks.wait_count(1)  # the ack carries the stream position a first-time client resumes from
    magk_proxy.reset_peer()
    states.wait_state(ConnectionState.RECONNECTING)
    magk_backend.publish({"type": "node_log", "data": {"after": "reset"}})
    assert got.wait_count(1)[0].data == {"after": "reset"}
