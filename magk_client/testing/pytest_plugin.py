"""pytest fixtures for testing code that uses magk-client (registered as a pytest plugin).

Enable it in a ``conftest.py`` with ``pytest_plugins = ["magk_client.testing.pytest_plugin"]``:

- ``magk_backend``: a fresh reference backend on 127.0.0.1 (port 0) for the test.
- ``magk_proxy``: a :class:`FaultProxy` in front of it, to cut, stall or slow the link.
- ``magk_service_factory``: builds a :class:`RealtimeService` pointed at the backend (or at the
  proxy with ``via_proxy=True``) and disconnects every service it built after the test.

Needs the ``server`` extra (aiohttp).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List

import pytest

from ..service import RealtimeService
from .backend import Backend
from .proxy import FaultProxy

__all__ = ["magk_backend", "magk_proxy", "magk_service_factory"]


@pytest.fixture()
def magk_backend() -> Iterator[Backend]:
    with Backend() as backend:
        yield backend


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
