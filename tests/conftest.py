"""Shared fixtures: the plugin's backend fixtures (magk_client.testing.pytest_plugin), raw loopback
servers, and raw WebSocket / SSE clients for the backend tests."""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import requests
import websocket

from magk_client.testing import Backend
from magk_client.testing.raw import RawServer
from magk_client.transports.base import TransportOptions
from magk_client.transports.sse import SSETransport

pytest_plugins = ["magk_client.testing.pytest_plugin"]  # magk_backend, magk_backend_factory, magk_proxy, ...
pytest.register_assert_rewrite("service_helpers")  # shared helpers of the fault tests


@pytest.fixture()
def backend(magk_backend: Backend) -> Backend:
    """The plugin's ``magk_backend`` under the name of the backend tests (hundreds of uses)."""
    return magk_backend


class RawWS:
    """websocket-client's plain connection plus JSON helpers (a blocking recv with a socket timeout)."""

    def __init__(self, url: str, timeout: float = 5.0, **kwargs: Any) -> None:
        self.ws = websocket.create_connection(url, timeout=timeout, **kwargs)

    def send_json(self, obj: Any) -> None:
        self.ws.send(json.dumps(obj))

    def recv_json(self) -> Any:
        return json.loads(self.ws.recv())

    def recv_until(self, pred: Callable[[Dict[str, Any]], bool], limit: int = 100000) -> List[Dict[str, Any]]:
        """Receive messages until one matches ``pred``; returns all of them, the match last."""
        out: List[Dict[str, Any]] = []
        for _ in range(limit):
            msg = self.recv_json()
            out.append(msg)
            if pred(msg):
                return out
        raise AssertionError(f"no matching message in {limit}")

    def command(self, command: str, workflow_id: str = "wf-1", request_id: str = "req-1", **extra: Any) -> Dict[str, Any]:
        payload: Dict[str, Any] = {"command": command, "workflowId": workflow_id, "requestId": request_id, **extra}
        self.send_json(
            {"id": request_id, "type": "workflow_event", "workflowId": workflow_id, "data": {"type": "command", "command": payload}}
        )
        msgs = self.recv_until(is_command_response)
        response: Dict[str, Any] = msgs[-1]["data"]["response"]
        return response

    def close(self) -> None:
        self.ws.close()


def is_command_response(msg: Dict[str, Any]) -> bool:
    return msg.get("type") == "workflow_event" and msg.get("data", {}).get("type") == "command_response"


def is_workflow_event(kind: str) -> Callable[[Dict[str, Any]], bool]:
    return lambda m: m.get("type") == "workflow_event" and m.get("data", {}).get("type") == kind


class RawSSE:
    """A minimal reader of our backend's SSE output over a streaming ``requests`` response."""

    def __init__(self, url: str, headers: Optional[Dict[str, str]] = None, timeout: float = 5.0, **kwargs: Any) -> None:
        self.response = requests.get(url, headers=headers or {}, stream=True, timeout=timeout, **kwargs)
        self._chunks = self.response.iter_content(chunk_size=None)
        self._buffer = b""

    def next_block(self) -> Optional[bytes]:
        """The next blank-line-terminated block (without the blank line), None at end of stream."""
        while b"\n\n" not in self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return None
            self._buffer += chunk
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        return block

    def next_event(self) -> Optional[Tuple[Optional[str], Dict[str, Any]]]:
        """The next event with data: ``(id, message)``; comments and retry blocks are skipped."""
        while True:
            block = self.next_block()
            if block is None:
                return None
            event_id: Optional[str] = None
            data: List[str] = []
            for line in block.decode("utf-8").split("\n"):
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
            if data:
                return event_id, json.loads("\n".join(data))

    def events_until(self, pred: Callable[[Dict[str, Any]], bool], limit: int = 100000) -> List[Tuple[Optional[str], Dict[str, Any]]]:
        out: List[Tuple[Optional[str], Dict[str, Any]]] = []
        for _ in range(limit):
            item = self.next_event()
            assert item is not None, "stream ended"
            out.append(item)
            if pred(item[1]):
                return out
        raise AssertionError(f"no matching event in {limit}")

    def close(self) -> None:
        self.response.close()


@pytest.fixture()
def ws_client() -> Iterator[Callable[..., RawWS]]:
    """Factory of raw WebSocket clients, closed at teardown."""
    made: List[RawWS] = []

    def make(url: str, **kwargs: Any) -> RawWS:
        client = RawWS(url, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        try:
            client.close()
        except Exception:
            pass


@pytest.fixture()
def sse_client() -> Iterator[Callable[..., RawSSE]]:
    """Factory of raw SSE readers, closed at teardown."""
    made: List[RawSSE] = []

    def make(url: str, **kwargs: Any) -> RawSSE:
        client = RawSSE(url, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture()
def raw_servers() -> Iterator[Callable[..., RawServer]]:
    """Factory of raw loopback servers (``RawServer(*args, **kwargs)``); every one is closed at
    teardown (which fails the test if a handler failed or a server thread is left)."""
    made: List[RawServer] = []

    def make(*args: Any, **kwargs: Any) -> RawServer:
        server = RawServer(*args, **kwargs)
        made.append(server)
        return server

    yield make
    failures: List[AssertionError] = []
    for server in made:
        try:
            server.close()
        except AssertionError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


@pytest.fixture()
def sse_transports() -> Iterator[Callable[..., SSETransport]]:
    """Factory of SSE transports, ``make(url, **options)`` (read and connect timeouts 5 s unless
    given); every one is closed at teardown."""
    made: List[SSETransport] = []

    def make(url: str, **options: Any) -> SSETransport:
        options.setdefault("read_timeout", 5.0)
        options.setdefault("connect_timeout", 5.0)
        transport = SSETransport(TransportOptions(url=url, **options))
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()
