"""SSE inbound throughput: magk_client's SSETransport vs a raw sseclient-py loop.

A raw loopback server streams N small SSE events (pre-encoded, sent in large
slices, so the server is not the bottleneck) with ``id:`` and a ~150-byte JSON
``data:`` line. Measured, interleaved over several runs, events/s of:

  (a) baseline: sseclient-py over a ``requests`` stream exactly as its README shows
      (``SSEClient(requests.get(url, stream=True))``), plus ``json.loads`` per event;
  (b) ``SSETransport.receive()`` plus ``json.loads`` per event.

Prints the medians and the ratio (b)/(a). Usage::

    python benchmarks/bench_sse_transport.py [--events 200000] [--runs 5] [--chunked]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import requests
import sseclient
from _servers import interleave

from magk_client.errors import TransportClosed
from magk_client.testing.raw import RawServer, sse, sse_event
from magk_client.transports.base import TransportOptions
from magk_client.transports.sse import SSETransport


def make_body(n: int) -> bytes:
    parts = []
    for i in range(n):
        msg = {
            "id": f"e-{i}",
            "type": "node_progress_update",
            "timestamp": "2026-11-26T10:00:00.000Z",
            "workflowId": "wf-1",
            "nodeId": "n-1",
            "data": {"progress": {"current": i, "total": n}},
        }
        parts.append(sse_event(json.dumps(msg, separators=(",", ":")).encode(), f"e-{i}"))
    return b"".join(parts)


def run_baseline(url: str, n: int) -> float:
    t0 = time.perf_counter()
    response = requests.get(url, stream=True)
    client = sseclient.SSEClient(response)
    count = 0
    for event in client.events():
        json.loads(event.data)
        count += 1
    dt = time.perf_counter() - t0
    response.close()
    assert count == n, (count, n)
    return n / dt


def run_transport(url: str, n: int) -> float:
    t0 = time.perf_counter()
    transport = SSETransport(TransportOptions(url=url, read_timeout=30.0))
    transport.open()
    count = 0
    loads = json.loads
    try:
        while True:
            for item in transport.receive():
                loads(item.data)  # type: ignore[union-attr]
                count += 1
    except TransportClosed:
        pass
    dt = time.perf_counter() - t0
    transport.close()
    assert count == n, (count, n)
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--chunked", action="store_true", help="chunked transfer encoding (default close-delimited)")
    args = ap.parse_args()
    body = make_body(args.events)
    step = 256 * 1024  # sent in large slices, so the server is not the bottleneck
    slices = [body[i : i + step] for i in range(0, len(body), step)]
    server = RawServer([sse(slices, chunked=args.chunked)], timeout=None)
    print(
        f"{args.events} events, {len(body) / args.events:.0f} bytes each, "
        f"{'chunked' if args.chunked else 'close-delimited'} body, {args.runs} interleaved runs"
    )
    cases = {
        "baseline": functools.partial(run_baseline, server.url(), args.events),
        "transport": functools.partial(run_transport, server.url(), args.events),
    }
    try:
        results = interleave(args.runs, cases, lambda line: print(line, flush=True))
    finally:
        server.close()
    a = statistics.median(results["baseline"])
    b = statistics.median(results["transport"])
    print(f"median (a) sseclient-py + requests (README) + json.loads: {a:10.0f} events/s")
    print(f"median (b) SSETransport.receive() + json.loads:          {b:10.0f} events/s")
    print(f"ratio (b)/(a): {b / a:.2f}  (target >= 1.0, goal 1.2)")


if __name__ == "__main__":
    main()
