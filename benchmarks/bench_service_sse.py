"""SDK-level SSE benchmark: RealtimeService(preferred_type="eventsource") to a no-op callback vs a raw
sseclient-py loop over a requests stream.

Loopback only. Two servers, each against both clients in the same run (see ``_servers.py``; by
default they live in a child process so the client has the interpreter to itself):

    backend  the reference Backend (aiohttp, chunked body), ``publish_many`` of N ~150-byte events
    raw      a raw-socket server writing N pre-encoded events (``id:`` + one ``data:`` line of
             150 bytes) as a chunked body in 64 KiB chunks (so the server is not the bottleneck)

Clients, interleaved (a, b, b, a, ...), RUNS times each; the medians and the ratio (b)/(a):

    (a) raw: sseclient-py as its README shows, ``SSEClient(requests.get(url, stream=True))``,
        ``for event in client.events(): json.loads(event.data)``
    (b) sdk: ``RealtimeService`` (eventsource only), a no-op callback subscribed to the event type
        that counts and sets a ``threading.Event`` at N

Against the Backend the clock starts when ``publish_many`` is sent (after the client's
``subscription_ack`` arrived, so the stream is attached) and stops at the Nth event.

Then one-way latency at RATE msg/s for DURATION s (each event its own HTTP chunk): the server
writes ``time.perf_counter()`` into each message just before sending it; the client subtracts it
from ``perf_counter()`` after ``json.loads`` (raw) or in the callback (sdk). p50 / p99 / max in ms;
the first 50 samples are dropped. ``--profile`` instead runs the SDK once against the raw server
with cProfile in its reader and dispatcher threads.

    python benchmarks/bench_service_sse.py [--quick] [-n N] [--runs RUNS] [--rate R] [--duration D]
                                           [--in-process] [--profile]

Targets (issue 4): ratio >= 1.0 (goal 1.2).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Iterator, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import requests
import sseclient
from _servers import ServerHost, bench_main
from _servers import sdk_latency as _sdk_latency
from _servers import sdk_throughput as _sdk_throughput

from magk_client import RealtimeService


def _service(url: str) -> RealtimeService:
    # eventsource only (no fallback to WebSocket); everything else at its defaults
    return RealtimeService(
        websocket_url=None, event_source_url=url, preferred_type="eventsource", connection_timeout_ms=10000
    )


def _open(url: str) -> tuple[requests.Response, Iterator[sseclient.Event]]:
    response = requests.get(url, stream=True, timeout=(10, 30))
    response.raise_for_status()
    # as sseclient-py's README does it: the Response itself is the event source (iter_content(128))
    return response, sseclient.SSEClient(response).events()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- throughput


def raw_throughput(host: ServerHost, url: str, n: int, backend: bool) -> float:
    response, events = _open(url)
    loads = json.loads
    try:
        if backend:
            ack = loads(next(events).data)  # the Backend attaches the stream before it sends the ack
            assert ack["type"] == "subscription_ack", ack
        start = time.perf_counter()
        if backend:
            host.begin("publish", n)
        count = 0
        for event in events:
            loads(event.data)
            count += 1
            if count == n:
                break
        elapsed = time.perf_counter() - start
        if backend:
            host.end()
    finally:
        response.close()
    if count != n:
        raise RuntimeError(f"raw SSE loop got {count} of {n} events")
    return n / elapsed


sdk_throughput = functools.partial(_sdk_throughput, _service)


# ---------------------------------------------------------------------------------------- latency


def raw_latency(host: ServerHost, url: str, count: int, backend: bool, rate: float, duration: float) -> List[float]:
    response, events = _open(url)
    loads = json.loads
    clock = time.perf_counter
    samples: List[float] = []
    try:
        if backend:
            loads(next(events).data)  # ack
            host.begin("paced", rate, duration)
        for event in events:
            samples.append(clock() - loads(event.data)["data"]["t"])
            if len(samples) == count:
                break
        if backend:
            host.end()
    finally:
        response.close()
    return samples


sdk_latency = functools.partial(_sdk_latency, _service)


# ---------------------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    return bench_main(
        kind="sse",
        doc=__doc__ or "",
        raw=(raw_throughput, raw_latency),
        sdk=(sdk_throughput, sdk_latency),
        labels=(
            "sseclient-py SSEClient(requests.get(url, stream=True)).events() + json.loads (its README)",
            "RealtimeService (eventsource) -> no-op callback on the dispatcher thread",
        ),
        targets="ratio >= 1.0 (goal 1.2)",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
