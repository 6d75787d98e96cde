"""pytest fixtures for testing code that uses magk-client (registered as a pytest plugin).

Enable it in a ``conftest.py`` with ``pytest_plugins = ["magk_client.testing.pytest_plugin"]``:

- ``magk_backend``: a fresh reference backend on 127.0.0.1 (port 0) for the test. Its options
  (:class:`Backend` keyword arguments) come from the closest ``magk_backend`` marker, e.g.
  ``pytestmark = pytest.mark.magk_backend(token="s3cret")`` for a module, or on one test.
- ``magk_backend_factory``: ``make(**options)`` starts another backend with those options.
- ``magk_proxy``: a :class:`FaultProxy` in front of ``magk_backend``, to cut, stall or slow the link.
- ``magk_service_factory``: builds a :class:`RealtimeService` pointed at the backend (or at the
  proxy with ``via_proxy=True``) and disconnects every service it built after the test.

Every backend is stopped after the test, and its thread must have ended. Needs the ``server``
extra (aiohttp).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List

import pytest

from ..service import RealtimeService
from .backend import Backend
from .proxy import FaultProxy

__all__ = ["magk_backend", "magk_backend_factory", "magk_proxy", "magk_service_factory"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "magk_backend(**options): Backend keyword arguments of the magk_backend fixture"
    )


@pytest.fixture()
def magk_backend_factory() -> Iterator[Callable[..., Backend]]:
    started: List[Backend] = []

    def make(**options: Any) -> Backend:
        backend = Backend(**options)
        started.append(backend)
        return backend.start()

    yield make
    for backend in reversed(started):
        backend.stop()
    left = [repr(b) for b in started if b.running]
    assert not left, f"backend threads still running after stop(): {left}"


@pytest.fixture()
def magk_backend(magk_backend_factory: Callable[..., Backend], request: pytest.FixtureRequest) -> Backend:
    marker = request.node.get_closest_marker("magk_backend")
    return magk_backend_factory(**(marker.kwargs if marker is not None else {}))


@pytest.fixture()
def magk_proxy(magk_backend: Backend) -> Iterator[FaultProxy]:
    with FaultProxy(magk_backend.host, magk_backend.port) as proxy:
        yield proxy


@pytest.fixture()
def magk_service_factory(
    magk_backend: Backend, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RealtimeService]]:
    built: List[RealtimeService] = []

    def build(*, via_proxy: bool = False, **overrides: Any) -> RealtimeService:
        ws, sse = magk_backend.websocket_url, magk_backend.event_source_url
        if via_proxy:
            proxy: FaultProxy = request.getfixturevalue("magk_proxy")
            ws, sse = proxy.url(ws), proxy.url(sse)
        options: Dict[str, Any] = {"websocket_url": ws, "event_source_url": sse, "reconnect_interval_ms": 50}
        options.update(overrides)
        service = RealtimeService(**options)
        built.append(service)
        return service

    yield build
    for service in built:
        service.close()
