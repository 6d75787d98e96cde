"""Inbound throughput of WebSocketTransport against a raw websocket-client loop (loopback only).

A raw-socket server on 127.0.0.1 sends N pre-framed 150-byte JSON text messages as fast as the
kernel takes them (one ``sendall`` of the whole blob), so the server is not the bottleneck.

    (a) raw:       websocket-client ``WebSocket(skip_utf8_validation=True)``: ``recv()`` + ``json.loads``
    (b) transport: ``WebSocketTransport.receive()`` batches + ``json.loads`` per message

Runs are interleaved (a, b, a, b, ...); the script prints the medians and the ratio (b)/(a).

    python benchmarks/bench_ws_transport.py [N] [RUNS]
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import statistics
import sys
import threading
import time
from typing import Callable, List

import websocket

from magk_client.transports.base import TransportOptions
from magk_client.transports.websocket import WebSocketTransport

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def message(i: int) -> bytes:
    base = {
        "id": f"e-{i:07d}",
        "type": "node_progress_update",
        "workflowId": "wf-1",
        "nodeId": "n-1",
        "data": {"progress": {"current": i % 10, "total": 10}, "p": ""},
    }
    raw = json.dumps(base, separators=(",", ":"))
    base["data"]["p"] = "x" * (150 - len(raw))  # type: ignore[index]
    out = json.dumps(base, separators=(",", ":")).encode()
    assert len(out) == 150, len(out)
    return out


def framed(payload: bytes) -> bytes:
    return bytes([0x81, 126]) + len(payload).to_bytes(2, "big") + payload


class BlastServer:
    """Answers each upgrade, sends the blob, then a close frame, and waits for the client to go."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob + b"\x88\x02\x03\xe8"
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/ws/realtime"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            key = next(
                line.split(":", 1)[1].strip()
                for line in data.decode("latin-1").split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            conn.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
                ).encode()
            )
            try:
                conn.sendall(self.blob)
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def run_raw(url: str, n: int) -> float:
    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws.connect(url)
    loads = json.loads
    start = time.perf_counter()
    for _ in range(n):
        loads(ws.recv())
    elapsed = time.perf_counter() - start
    ws.close(timeout=0.2)
    return n / elapsed


def run_transport(url: str, n: int) -> float:
    t = WebSocketTransport(TransportOptions(url=url))
    t.open()
    loads = json.loads
    count = 0
    start = time.perf_counter()
    while count < n:
        for item in t.receive():
            loads(item)  # type: ignore[arg-type]
            count += 1
    elapsed = time.perf_counter() - start
    t.close()
    return n / elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    blob = b"".join(framed(message(i)) for i in range(n))
    server = BlastServer(blob)
    results: dict[str, List[float]] = {"raw": [], "transport": []}
    cases: dict[str, Callable[[str, int], float]] = {"raw": run_raw, "transport": run_transport}
    try:
        for i in range(runs):
            for name in ("raw", "transport") if i % 2 == 0 else ("transport", "raw"):
                rate = cases[name](server.url, n)
                results[name].append(rate)
                print(f"run {i + 1} {name:9s} {rate:10,.0f} msg/s", flush=True)
    finally:
        server.close()
    raw = statistics.median(results["raw"])
    transport = statistics.median(results["transport"])
    print(f"\n{n} messages of 150 bytes, {runs} interleaved runs, medians:")
    print(f"  (a) websocket-client recv() + json.loads : {raw:10,.0f} msg/s")
    print(f"  (b) WebSocketTransport.receive() + loads : {transport:10,.0f} msg/s")
    print(f"  ratio (b)/(a): {transport / raw:.2f}")


if __name__ == "__main__":
    main()
