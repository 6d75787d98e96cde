"""NodeExecutionStore throughput: events applied per second while readers poll snapshots.

In one process, 1,000 nodes across 10 workflows (100 nodes each), N pre-built node events
(``RealtimeMessage``: per node a cycle of status running, 3 progress updates, metadata, a log
line, a result, status completed; unique ids; a distinct server timestamp per event, so the
timestamp cache never hits), applied by one writer thread while R reader threads (default 8)
poll: each poll is one ``get_node_state`` of a random node, and every 10th poll also a
``get_workflow_nodes`` of a random workflow. Readers poll back to back (the worst case) unless
``--poll-interval-ms`` makes them wait between polls. Cases, interleaved run by run:

    (a) raw       a plain nested dict under a ``threading.Lock``: ``d[wf][node] = message.data``;
                  readers ``d[wf].get(node)`` and ``dict(d[wf])`` under the same lock
    (b) apply     ``store.apply_message(message)``: dedup by id, timestamp parse, ordering rule,
                  frozen copies of the data, a new immutable snapshot per event
    (c) action    ``store.update_node_progress(wf, node, {...})`` for every event (no id, no
                  timestamp): the action path without dedup or timestamp parsing

Each run is bounded (``--max-seconds``); the script prints, as medians, events/s (wall clock)
and its ratio to (a), the writer thread's CPU time per event (``time.thread_time``) and its
ratio, and the readers' polls/s; then it checks the store: the versions add up to the events
applied. With readers polling back to back, wall-clock rates mostly measure how the GIL is
shared among 9 threads (a lock-free ``get_node_state`` lets readers poll more, and so take
more of the GIL); the writer's CPU per event is the stable figure.

    python benchmarks/bench_store.py [--quick] [-n 100000] [--runs 5] [--readers 8]
                                     [--poll-interval-ms 0] [--max-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from magk_client import NodeExecutionStore, RealtimeMessage

WORKFLOWS = 10
NODES_PER_WORKFLOW = 100
CYCLE = (
    ("node_status_update", lambda i: {"status": "running"}),
    ("node_progress_update", lambda i: {"progress": {"current": 1, "total": 3, "percentage": 33}}),
    ("node_progress_update", lambda i: {"progress": {"current": 2, "total": 3, "percentage": 67}}),
    ("node_progress_update", lambda i: {"progress": {"current": 3, "total": 3, "percentage": 100}}),
    ("node_metadata", lambda i: {"metadata": {"executionTime": i % 97, "rowsProcessed": 100}}),
    ("node_log", lambda i: {"logs": [{"timestamp": "", "level": "info", "message": f"step {i}"}]}),
    ("node_result", lambda i: {"result": {"rowCount": 100, "columnCount": 2}}),
    ("node_status_update", lambda i: {"status": "completed"}),
)

Case = Tuple[Callable[[RealtimeMessage], Any], Callable[[str, str], Any], Callable[[str], Any]]


def keys() -> List[Tuple[str, str]]:
    return [(f"wf-{w}", f"node-{n}") for w in range(WORKFLOWS) for n in range(NODES_PER_WORKFLOW)]


def build_events(n: int) -> List[RealtimeMessage]:
    all_keys = keys()
    start = datetime(2026, 11, 26, 10, 0, 0, tzinfo=timezone.utc)
    events = []
    for i in range(n):
        wf, node = all_keys[i % len(all_keys)]
        mtype, data = CYCLE[(i // len(all_keys)) % len(CYCLE)]
        stamp = (start + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        events.append(RealtimeMessage(mtype, id=f"e-{i + 1}", timestamp=stamp, workflow_id=wf, node_id=node, data=data(i)))
    return events


def raw_case() -> Case:
    lock = threading.Lock()
    nodes: Dict[str, Dict[str, Any]] = {}

    def apply(m: RealtimeMessage) -> None:
        with lock:
            workflow = nodes.get(m.workflow_id)  # type: ignore[arg-type]
            if workflow is None:
                workflow = nodes[m.workflow_id] = {}  # type: ignore[index]
            workflow[m.node_id] = m.data  # type: ignore[index]

    def read(wf: str, node: str) -> Any:
        with lock:
            workflow = nodes.get(wf)
            return None if workflow is None else workflow.get(node)

    def read_wf(wf: str) -> Any:
        with lock:
            return dict(nodes.get(wf, {}))

    return apply, read, read_wf


def store_case(store: NodeExecutionStore, action: bool) -> Case:
    if action:
        update = store.update_node_progress

        def apply(m: RealtimeMessage) -> Any:
            return update(m.workflow_id, m.node_id, {"current": 1, "total": 3})  # type: ignore[arg-type]

    else:
        apply = store.apply_message
    return apply, store.get_node_state, store.get_workflow_nodes


def run(
    case: Case, events: List[RealtimeMessage], readers: int, poll_interval: float, max_seconds: float
) -> Tuple[float, float, float, int]:
    """Returns (events/s wall clock, reader polls/s, writer CPU us per event, events applied)."""
    apply, read, read_wf = case
    all_keys = keys()
    workflows = [f"wf-{w}" for w in range(WORKFLOWS)]
    stop = threading.Event()
    started = threading.Barrier(readers + 1)
    polls = [0] * readers

    def reader(r: int) -> None:
        rng = random.Random(r)
        started.wait(30)
        count = 0
        while not stop.is_set():
            wf, node = all_keys[rng.randrange(len(all_keys))]
            read(wf, node)
            count += 1
            if count % 10 == 0:
                read_wf(workflows[rng.randrange(WORKFLOWS)])
            if poll_interval:
                stop.wait(poll_interval)
        polls[r] = count

    threads = [threading.Thread(target=reader, args=(r,), name=f"bench-reader-{r}", daemon=True) for r in range(readers)]
    for t in threads:
        t.start()
    started.wait(30)
    deadline = time.perf_counter() + max_seconds
    t0 = time.perf_counter()
    c0 = time.thread_time()
    done = 0
    for start in range(0, len(events), 1000):
        for m in events[start : start + 1000]:
            apply(m)
        done = min(start + 1000, len(events))
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - t0
    cpu = time.thread_time() - c0
    stop.set()
    for t in threads:
        t.join(30)
    return done / elapsed, sum(polls) / elapsed, cpu / done * 1e6, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="events per run (default 100,000)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--poll-interval-ms", type=float, default=0.0, help="readers wait this long between polls")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="bound on each run's writer loop")
    parser.add_argument("--quick", action="store_true", help="-n 30000 --runs 3")
    args = parser.parse_args()
    if args.quick:
        args.n, args.runs = 30_000, 3
    events = build_events(args.n)
    poll = args.poll_interval_ms / 1000.0
    results: Dict[str, List[Tuple[float, float, float]]] = {"raw": [], "apply": [], "action": []}
    check = ""
    for i in range(args.runs):
        for name, rows in results.items():
            store = NodeExecutionStore()
            case = raw_case() if name == "raw" else store_case(store, action=(name == "action"))
            rate, poll_rate, cpu_us, done = run(case, events, args.readers, poll, args.max_seconds)
            rows.append((rate, poll_rate, cpu_us))
            if name == "apply":
                versions = sum(s.version for s in store.get_all_states())
                stats = store.stats
                ok = versions == stats.applied == done and stats.stale_ignored == 0 and stats.duplicates_ignored == 0
                check = f"{len(store)} nodes, versions sum {versions} = applied {stats.applied} = events {done}: {'ok' if ok else 'MISMATCH'}"
        print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1][0]:,.0f}/s" for k, v in results.items()), flush=True)
    med = {k: tuple(statistics.median(x[j] for x in v) for j in range(3)) for k, v in results.items()}
    print()
    print(f"{args.n:,} events, {WORKFLOWS * NODES_PER_WORKFLOW:,} nodes in {WORKFLOWS} workflows, {args.readers} readers, "
          f"poll interval {args.poll_interval_ms} ms, medians of {args.runs} interleaved runs")
    print(f"{'case':<40}{'events/s':>12}{'ratio':>8}{'writer CPU us/event':>21}{'ratio':>8}{'reader polls/s':>16}")
    labels = {"raw": "(a) raw: dict update under a Lock", "apply": "(b) store.apply_message", "action": "(c) store.update_node_progress"}
    for name, (rate, poll_rate, cpu_us) in med.items():
        print(
            f"{labels[name]:<40}{rate:>12,.0f}{rate / med['raw'][0]:>8.2f}"
            f"{cpu_us:>21.2f}{cpu_us / med['raw'][2]:>8.2f}{poll_rate:>16,.0f}"
        )
    print(f"check (last apply run): {check}")


if __name__ == "__main__":
    main()
