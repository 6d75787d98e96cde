"""Inbound throughput of WebSocketTransport against a raw websocket-client loop (loopback only).

A raw-socket server on 127.0.0.1 sends N pre-framed 150-byte JSON text messages as fast as the
kernel takes them (one ``sendall`` of the whole blob), so the server is not the bottleneck.

    (a) raw:       websocket-client ``WebSocket(skip_utf8_validation=True)``: ``recv()`` + ``json.loads``
    (b) transport: ``WebSocketTransport.receive()`` batches + ``json.loads`` per message

Runs are interleaved (a, b, a, b, ...); the script prints the medians and the ratio (b)/(a).

    python benchmarks/bench_ws_transport.py [N] [RUNS]
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time

import websocket
from _servers import WS_CLOSE_1000, dumps, event, interleave

from magk_client.testing.raw import OP_TEXT, RawServer, ws_frame, ws_script
from magk_client.transports.base import TransportOptions
from magk_client.transports.websocket import WebSocketTransport


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
    blob = b"".join(ws_frame(OP_TEXT, dumps(event(i))) for i in range(n)) + WS_CLOSE_1000
    # answers each upgrade, sends the blob (a close frame last), then waits for the client to go
    server = RawServer(ws_script(lambda conn: (conn.send(blob), conn.drain())), timeout=None)
    cases = {
        "raw": functools.partial(run_raw, server.ws_url(), n),
        "transport": functools.partial(run_transport, server.ws_url(), n),
    }
    try:
        results = interleave(runs, cases, lambda line: print(line, flush=True))
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
