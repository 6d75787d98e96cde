"""The pytest plugin our users get: backend, proxy and service-factory fixtures."""

from __future__ import annotations

from typing import Callable

import pytest

from magk_client import ConnectionState, RealtimeService
from magk_client.testing import Backend, FaultProxy, Recorder, StateRecorder

pytest_plugins = ["magk_client.testing.pytest_plugin", "pytester"]


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


@pytest.mark.magk_backend(token="s3cret", workflows={"wf-x": ["n-1"]})
def test_the_marker_gives_magk_backend_its_options(magk_backend: Backend) -> None:
    assert magk_backend.running and magk_backend.token == "s3cret"
    assert magk_backend.workflow_ids() == ["wf-x"]


def test_the_factory_starts_backends_with_options_and_stops_every_one(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["magk_client.testing.pytest_plugin"]')
    pytester.makepyfile(
        """
        import pytest

        made = []

        def test_two(magk_backend_factory, magk_backend):
            made.extend([magk_backend_factory(token="a"), magk_backend_factory(pace=0.5), magk_backend])
            assert all(b.running for b in made) and len({b.port for b in made}) == 3
            assert made[0].token == "a" and made[1].pace == 0.5 and made[2].token is None

        def test_all_stopped():
            assert len(made) == 3 and not any(b.running for b in made)
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
