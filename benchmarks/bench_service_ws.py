"""SDK-level WebSocket benchmark: RealtimeService to a no-op callback vs a raw websocket-client loop.

Loopback only. Two servers, each against both clients in the same run (see ``_servers.py``; by
default they live in a child process so the client has the interpreter to itself):

    backend  the reference Backend (aiohttp), ``publish_many`` of N ~150-byte events
    raw      a raw-socket server writing N pre-framed 150-byte messages in one ``sendall``
             (so the server is not the bottleneck)

Clients, interleaved (a, b, b, a, ...), RUNS times each; the medians and the ratio (b)/(a):

    (a) raw: websocket-client ``WebSocket(skip_utf8_validation=True)``: ``recv()`` + ``json.loads``
    (b) sdk: ``RealtimeService`` (websocket only), a no-op callback subscribed to the event type
        that counts and sets a ``threading.Event`` at N

Against the Backend the clock starts when ``publish_many`` is sent (after the client's
``subscription_ack`` arrived, so the connection is attached) and stops at the Nth event.

Then one-way latency at RATE msg/s for DURATION s: the server writes ``time.perf_counter()`` into
each message just before sending it; the client subtracts it from ``perf_counter()`` when
``json.loads`` returns (raw) or in the callback (sdk). p50 / p99 / max in ms; the first 50
samples (connection warm-up) are dropped. ``--profile`` instead runs the SDK once against the
raw server with cProfile in its reader and dispatcher threads.

    python benchmarks/bench_service_ws.py [--quick] [-n N] [--runs RUNS] [--rate R] [--duration D]
                                          [--in-process] [--profile]

Targets (issue 3): ratio >= 1.0 (goal 1.5); SDK p99 < 1 ms.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import websocket
from _servers import ServerHost, bench_main
from _servers import sdk_latency as _sdk_latency
from _servers import sdk_throughput as _sdk_throughput

from magk_client import RealtimeService


def _service(url: str) -> RealtimeService:
    # websocket only (no fallback to SSE); everything else at its defaults
    return RealtimeService(websocket_url=url, event_source_url=None, connection_timeout_ms=10000)


# ---------------------------------------------------------------------------------------- throughput


def raw_throughput(host: ServerHost, url: str, n: int, backend: bool) -> float:
    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws.connect(url, timeout=10)  # type: ignore[no-untyped-call]
    ws.settimeout(None)  # blocking, as the SDK's socket (a timeout costs ~12 %)
    loads = json.loads
    try:
        if backend:
            ack = loads(ws.recv())  # the Backend attaches the connection before it sends the ack
            assert ack["type"] == "subscription_ack", ack
        start = time.perf_counter()
        if backend:
            host.begin("publish", n)
        for _ in range(n):
            loads(ws.recv())
        elapsed = time.perf_counter() - start
        if backend:
            host.end()
    finally:
        ws.close(timeout=0.2)
    return n / elapsed


sdk_throughput = functools.partial(_sdk_throughput, _service)


# ---------------------------------------------------------------------------------------- latency


def raw_latency(host: ServerHost, url: str, count: int, backend: bool, rate: float, duration: float) -> List[float]:
    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws.connect(url, timeout=10)  # type: ignore[no-untyped-call]
    ws.settimeout(None)
    loads = json.loads
    clock = time.perf_counter
    samples: List[float] = []
    try:
        if backend:
            loads(ws.recv())  # ack
            host.begin("paced", rate, duration)
        while len(samples) < count:
            msg = loads(ws.recv())
            samples.append(clock() - msg["data"]["t"])
        if backend:
            host.end()
    finally:
        ws.close(timeout=0.2)
    return samples


sdk_latency = functools.partial(_sdk_latency, _service)


# ---------------------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    return bench_main(
        kind="ws",
        doc=__doc__ or "",
        raw=(raw_throughput, raw_latency),
        sdk=(sdk_throughput, sdk_latency),
        labels=(
            "websocket-client WebSocket(skip_utf8_validation=True).recv() + json.loads",
            "RealtimeService (websocket) -> no-op callback on the dispatcher thread",
        ),
        targets="ratio >= 1.0 (goal 1.5); SDK p99 < 1 ms",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
