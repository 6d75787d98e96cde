"""Subscription router at scale: subscribe cost and inbound delivery with thousands of scoped subscriptions.

A dashboard watching every node of many workflows holds thousands of subscriptions, each scoped to
a workflow and a node. Two curves, each as a ratio (loopback only, every loop bounded):

1. subscribe / unsubscribe cost per 1,000 through ``RealtimeService.subscribe`` /
   ``unsubscribe`` (a service that is not connected: the router is the whole cost). SUBS scoped
   subscriptions (``wf-x<i // 100>`` / ``n-<i % 100>``: 100 nodes per workflow) are added one by
   one, timing each block of 1,000; then removed in the order they subscribed, timing each block.
   Ratios: the last thousand added (9,000 -> 10,000 present) over the first (0 -> 1,000), and the
   first thousand removed (10,000 -> 9,000 present) over the last (1,000 -> 0). Timed in the
   thread's CPU time (``time.thread_time``: time the scheduler gives other processes of a shared
   machine is not counted); medians of RUNS fresh services; the cyclic GC stays on, as in an
   application.

2. inbound delivery through ``RealtimeService`` from the raw server of ``_servers.py`` (N
   pre-framed ~150-byte ``node_progress_update`` events of ``wf-1`` / ``n-1`` in one ``sendall``)
   to a counting no-op callback subscribed to that type, with FEW (10) and with SUBS (10,000)
   extra scoped subscriptions to the same type that match none of the events. Runs interleaved,
   RUNS of each; medians and the ratio (SUBS) / (FEW), of messages/s and of the client's CPU time
   per message (``time.process_time``, all its threads; steadier than the rate on a shared
   machine). The server runs in a spawned child process.

    python benchmarks/bench_router.py [--quick] [-n N] [--runs RUNS] [--subs SUBS]
                                      [--transport ws|sse] [--in-process]

Targets (issue 9): subscribe/unsubscribe ratio <= 3; delivery with 10,000 at least 1 / 1.5 of
delivery with 10 (ratio >= 0.67).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _servers import EVENT_TYPE, MESSAGE_SIZE, RUN_TIMEOUT, Counter, ServerHost, interleave, median

from magk_client import RealtimeMessage, RealtimeService

BLOCK = 1000
FEW = 10


def scope(i: int) -> Dict[str, str]:
    """The i-th dashboard subscription's scope: never ``wf-1``, the workflow the server sends."""
    return {"workflow_id": f"wf-x{i // 100}", "node_id": f"n-{i % 100}"}


def _noop(message: RealtimeMessage) -> None:
    pass


def _service(transport: str, url: Optional[str]) -> RealtimeService:
    if transport == "ws":
        return RealtimeService(websocket_url=url, event_source_url=None, connection_timeout_ms=10000)
    return RealtimeService(
        websocket_url=None, event_source_url=url, preferred_type="eventsource", connection_timeout_ms=10000
    )


# ---------------------------------------------------------------------------------------- curve 1


def subscribe_curve(transport: str, subs: int) -> Tuple[List[float], List[float]]:
    """CPU seconds per block of 1,000 subscribes (in order), then per block of 1,000 unsubscribes."""
    service = _service(transport, "ws://127.0.0.1:9/unused" if transport == "ws" else "http://127.0.0.1:9/unused")
    clock = time.thread_time
    added: List[str] = []
    adds: List[float] = []
    removes: List[float] = []
    try:
        for start in range(0, subs, BLOCK):
            t0 = clock()
            for i in range(start, start + BLOCK):
                added.append(service.subscribe(EVENT_TYPE, _noop, **scope(i)))
            adds.append(clock() - t0)
        for start in range(0, subs, BLOCK):
            t0 = clock()
            for sid in added[start : start + BLOCK]:
                service.unsubscribe(sid)
            removes.append(clock() - t0)
    finally:
        service.disconnect()
    return adds, removes


# ---------------------------------------------------------------------------------------- curve 2


def delivery(transport: str, extra: int, host: ServerHost, url: str, n: int, cpu: List[float]) -> float:
    """Messages/s to the counting callback with ``extra`` non-matching scoped subscriptions; appends
    the client's CPU time per message (all its threads; the server is another process) to ``cpu``."""
    counter = Counter(n)
    service = _service(transport, url)
    for i in range(extra):
        service.subscribe(EVENT_TYPE, _noop, **scope(i))
    service.subscribe(EVENT_TYPE, counter)
    try:
        service.connect(timeout=10)
        start, cpu_start = time.perf_counter(), time.process_time()
        ok = counter.done.wait(RUN_TIMEOUT)
        elapsed, cpu_used = time.perf_counter() - start, time.process_time() - cpu_start
        health = service.get_connection_health()
    finally:
        service.disconnect()
    if not ok:
        raise RuntimeError(f"SDK delivered {counter.count} of {n} in {RUN_TIMEOUT} s (errors={health.errors[-3:]})")
    cpu.append(cpu_used / n)
    return n / elapsed


# ---------------------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: N=50000, 3 runs")
    ap.add_argument("-n", type=int, default=None, help="messages per delivery run (default 200000)")
    ap.add_argument("--runs", type=int, default=None, help="runs of each case (default 5)")
    ap.add_argument("--subs", type=int, default=10000, help="scoped subscriptions, a multiple of 1000 (default 10000)")
    ap.add_argument("--transport", choices=("ws", "sse"), default="ws", help="delivery runs over (default ws)")
    ap.add_argument("--in-process", action="store_true", help="run the server on a thread of this process")
    args = ap.parse_args(argv)
    if args.subs < 2 * BLOCK or args.subs % BLOCK:
        ap.error(f"--subs must be a multiple of {BLOCK}, at least {2 * BLOCK}")
    # The SDK logs each connection loss at WARNING (a blast run ends with the server closing).
    logging.getLogger("magk_client").setLevel(logging.ERROR)
    n = args.n or (50_000 if args.quick else 200_000)
    runs = args.runs or (3 if args.quick else 5)
    t_start = time.monotonic()

    print(f"1. subscribe / unsubscribe {args.subs:,} scoped subscriptions, per {BLOCK:,} ({runs} runs)", flush=True)
    adds: List[List[float]] = []
    removes: List[List[float]] = []
    for run in range(runs):
        a, r = subscribe_curve(args.transport, args.subs)
        adds.append(a)
        removes.append(r)
        print(
            f"  run {run + 1}: subscribe first {a[0] * 1e3:7.2f} ms  last {a[-1] * 1e3:7.2f} ms   "
            f"unsubscribe first {r[0] * 1e3:7.2f} ms  last {r[-1] * 1e3:7.2f} ms",
            flush=True,
        )
    blocks = args.subs // BLOCK
    add_curve = [statistics.median(run[b] for run in adds) for b in range(blocks)]
    remove_curve = [statistics.median(run[b] for run in removes) for b in range(blocks)]

    print(f"\n2. delivery over {args.transport}: {n:,} messages of ~{MESSAGE_SIZE} bytes, raw server", flush=True)
    host = ServerHost(n, in_process=args.in_process)
    try:
        url = host.raw_url(args.transport, "blast")
        cpu: Dict[str, List[float]] = {f"{FEW} scoped": [], f"{args.subs} scoped": []}
        cases = {
            name: functools.partial(delivery, args.transport, extra, host, url, n, cpu[name])
            for name, extra in zip(cpu, (FEW, args.subs))
        }
        rates = interleave(runs, cases, lambda line: print(line, flush=True))
    finally:
        host.close()
    few, many = (median(rates[name]) for name in cases)
    cpu_few, cpu_many = (median(cpu[name]) * 1e6 for name in cases)

    print(f"\n== summary: medians of {runs} runs, {time.monotonic() - t_start:.0f} s in all")
    print(f"subscribe, ms per {BLOCK:,}, by thousand (0 -> {args.subs:,} present):")
    print("  " + " ".join(f"{x * 1e3:.2f}" for x in add_curve))
    print(f"unsubscribe, ms per {BLOCK:,}, by thousand ({args.subs:,} -> 0 present):")
    print("  " + " ".join(f"{x * 1e3:.2f}" for x in remove_curve))
    print(
        f"subscribe   last / first thousand:  {add_curve[-1] * 1e3:.2f} / {add_curve[0] * 1e3:.2f} ms"
        f" = {add_curve[-1] / add_curve[0]:.2f}"
    )
    print(
        f"unsubscribe first / last thousand:  {remove_curve[0] * 1e3:.2f} / {remove_curve[-1] * 1e3:.2f} ms"
        f" = {remove_curve[0] / remove_curve[-1]:.2f}"
    )
    print(f"delivery    {args.subs:,} / {FEW} scoped:  {many:,.0f} / {few:,.0f} msg/s = {many / few:.2f}")
    print(f"client CPU per message, {args.subs:,} / {FEW} scoped:  {cpu_many:.2f} / {cpu_few:.2f} us = {cpu_many / cpu_few:.2f}")
    print("targets: subscribe and unsubscribe ratios <= 3; delivery ratio >= 0.67 (within 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
