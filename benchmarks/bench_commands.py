"""Command round trip: RealtimeAdapter over the WebSocket and over POST /commands, against a raw
``requests`` loop on the same reference Backend.

Loopback only; the Backend runs in a child process (``_servers.ServerHost``), so the client has the
interpreter to itself. Each round trip is one blocking ``update_config`` on ``wf-1`` (the engine
merges the config, emits one ``config_updated`` event and answers), timed from the call to the
answer in the caller's hand. Clients, interleaved (a, b, c, d, a, b, ...), RUNS times each:

    (a) requests.post       ``requests.post(url, json=payload)`` (a new connection each call)
    (b) requests.Session    ``session.post(url, json=payload)`` (keep-alive: raw requests at its best)
    (c) adapter, WebSocket  ``adapter.update_config(...)``: the command envelope on the live socket,
                            the answer back on it through the reader and the dispatcher
    (d) adapter, SSE        ``adapter.update_config(...)`` while on SSE: ``POST /commands`` on the
                            adapter's HTTP pool, the reply completing the caller's Future

p50 / p99 in ms (the first WARMUP round trips of a run dropped), medians over the runs, and each
client's p50 as a ratio of (b)'s (lower is better).

    python benchmarks/bench_commands.py [--quick] [-n N] [--runs RUNS] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import requests
from _servers import ServerHost

from magk_client import RealtimeAdapter

WARMUP = 50

Loop = Callable[[str, int], List[float]]


def _payload() -> Dict[str, object]:
    return {"command": "update_config", "workflowId": "wf-1", "data": {"k": 1}, "requestId": f"req-{uuid.uuid4().hex}"}


def _time_posts(post: Callable[..., requests.Response], base: str, n: int) -> List[float]:
    url = base + "/commands"
    samples: List[float] = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        resp = post(url, json=_payload(), timeout=10)
        resp.json()
        samples.append(clock() - t0)
        assert resp.status_code == 200
    return samples


def raw_post(base: str, n: int) -> List[float]:
    return _time_posts(requests.post, base, n)


def raw_session(base: str, n: int) -> List[float]:
    with requests.Session() as session:
        session.trust_env = False
        return _time_posts(session.post, base, n)


def _adapter_loop(transport: str) -> Loop:
    def run(base: str, n: int) -> List[float]:
        adapter = RealtimeAdapter(
            backend_base_url=base,
            enable_health_check=False,
            connection_config={"preferred_type": transport, "fallback_to_secondary": False},
        )
        samples: List[float] = []
        clock = time.perf_counter
        with adapter:
            for _ in range(n):
                t0 = clock()
                adapter.update_config("wf-1", {"k": 1})
                samples.append(clock() - t0)
        return samples

    return run


def _pct(samples: List[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="round trips per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="-n 300 --runs 1")
    parser.add_argument("--in-process", action="store_true", help="run the Backend on a thread of this process")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.runs = 300, 1
    clients: Dict[str, Loop] = {
        "requests.post": raw_post,
        "requests.Session": raw_session,
        "adapter, WebSocket": _adapter_loop("websocket"),
        "adapter, SSE (POST /commands)": _adapter_loop("eventsource"),
    }
    host = ServerHost(10, in_process=args.in_process)
    try:
        base = host.backend_ws.replace("ws://", "http://").rsplit("/ws/", 1)[0]
        results: Dict[str, List[List[float]]] = {name: [] for name in clients}
        for _ in range(args.runs):
            for name, loop in clients.items():
                samples = loop(base, args.n + WARMUP)[WARMUP:]
                results[name].append(samples)
    finally:
        host.close()
    baseline = statistics.median(_pct(s, 0.5) for s in results["requests.Session"])
    print(f"command round trip, {args.n} per run, {args.runs} run(s), Backend "
          f"{'in process' if args.in_process else 'in a child process'}")
    print(f"{'client':<32}{'p50 ms':>9}{'p99 ms':>9}{'p50 / Session':>15}")
    for name, runs in results.items():
        p50 = statistics.median(_pct(s, 0.5) for s in runs)
        p99 = statistics.median(_pct(s, 0.99) for s in runs)
        print(f"{name:<32}{p50:>9.3f}{p99:>9.3f}{p50 / baseline:>15.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
