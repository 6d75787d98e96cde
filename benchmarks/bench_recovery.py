"""Recovery benchmark: how fast RealtimeService notices a dead connection and resumes, with no loss.

Loopback only: the reference Backend (in this process) behind a FaultProxy. For each transport
(WebSocket, SSE) and each fault, REPS repetitions, each with a fresh service (websocket only or
eventsource only, ``heartbeat_interval_ms=500``, ``heartbeat_timeout_ms=300``, the given
``reconnect_interval_ms``, everything else at its defaults):

    drop       ``FaultProxy.reset_peer()``: RST on both sides (the client sees ECONNRESET)
    half-open  ``FaultProxy.blackhole(True)``: the sockets stay open, nothing passes either way;
               lifted as soon as the service reports ``reconnecting`` (the blackhole also holds
               new connections, so the reconnect needs it gone: think of a NAT entry that died
               while a fresh path works)

A publisher thread publishes a numbered stream (``--rate`` events/s) before, during and after the
fault. Per repetition:

    detect   fault -> the state listener hears ``reconnecting``
    resume   fault -> the first event *published after the fault* reaches the callback
    check    every event published from the first one received to the last one is delivered
             exactly once, in order (counted as lost / duplicated / out of order otherwise)

The fault comes at a random moment (0-500 ms after the first 20 events arrived), so the heartbeat
phase is not always the same. Reconnect delays use full jitter: with the default
``reconnect_interval_ms=1000`` the first retry waits uniform(0, 1 s), which dominates "resume";
``--reconnect-interval-ms 50`` shows the cost of the mechanism itself.

    python benchmarks/bench_recovery.py [--quick] [--reps 10] [--reconnect-interval-ms 1000]
                                        [--transports ws,sse] [--faults drop,half-open]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from magk_client import ConnectionState, RealtimeMessage, RealtimeService
from magk_client.testing.backend import Backend
from magk_client.testing.proxy import FaultProxy

HEARTBEAT_INTERVAL_MS = 500
HEARTBEAT_TIMEOUT_MS = 300
EVENT_TYPE = "node_progress_update"
#: bound on every wait of one repetition (seconds)
STEP_TIMEOUT = 15.0
#: --verbose: the services log their decisions (log_level="debug")
VERBOSE = False


class Publisher:
    """Publishes a numbered stream at ``rate`` events/s on its own thread; records (id, send time)."""

    def __init__(self, backend: Backend, rate: float) -> None:
        self.backend = backend
        self.interval = 1.0 / rate
        self.sent: List[Tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        start = time.perf_counter()
        deadline = time.monotonic() + 120.0  # hard bound, whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            t = time.perf_counter()
            event_id = self.backend.publish({"type": EVENT_TYPE, "workflowId": "wf-1", "data": {"seq": seq}})
            self.sent.append((event_id, t))
            seq += 1
            self._stop.wait(max(0.0, start + seq * self.interval - time.perf_counter()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(10.0)


@dataclass
class Recorder:
    """What the service delivered: events (id, time) and state changes (state, time)."""

    events: List[Tuple[str, float]] = field(default_factory=list)
    states: List[Tuple[ConnectionState, float]] = field(default_factory=list)
    attached: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def on_event(self, message: RealtimeMessage) -> None:
        with self.changed:
            self.events.append((message.id, time.perf_counter()))
            self.changed.notify_all()

    def on_state(self, state: ConnectionState, _error: Optional[BaseException]) -> None:
        with self.changed:
            self.states.append((state, time.perf_counter()))
            self.changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = STEP_TIMEOUT) -> bool:
        with self.changed:
            return bool(self.changed.wait_for(predicate, timeout))


@dataclass
class Outcome:
    detect_ms: float
    resume_ms: float
    delivered: int
    lost: int
    duplicated: int
    disordered: int


def _check(published: List[str], delivered: List[str]) -> Tuple[int, int, int]:
    """(lost, duplicated, out of order) of ``delivered`` against ``published`` (from its first id on)."""
    if not delivered:
        return len(published), 0, 0
    start = published.index(delivered[0]) if delivered[0] in published else 0
    expected = published[start:]
    seen = set(delivered)
    lost = sum(1 for e in expected if e not in seen)
    duplicated = len(delivered) - len(seen)
    order = {e: i for i, e in enumerate(expected)}
    positions = [order[d] for d in delivered if d in order]
    disordered = sum(1 for a, b in zip(positions, positions[1:]) if b <= a)
    return lost, duplicated, disordered


def one_rep(
    backend: Backend,
    proxy: FaultProxy,
    transport: str,
    fault: str,
    reconnect_ms: float,
    rate: float,
    rng: random.Random,
) -> Outcome:
    if transport == "ws":
        urls: Dict[str, Any] = {"websocket_url": proxy.url(backend.websocket_url), "event_source_url": None}
    else:
        urls = {
            "websocket_url": None,
            "event_source_url": proxy.url(backend.event_source_url),
            "preferred_type": "eventsource",
        }
    service = RealtimeService(
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS,
        reconnect_interval_ms=reconnect_ms,
        log_level="debug" if VERBOSE else "info",
        **urls,
    )
    rec = Recorder()
    service.subscribe(EVENT_TYPE, rec.on_event)
    service.subscribe("subscription_ack", lambda _m: rec.attached.set())
    service.on_connection_state_change(rec.on_state)
    publisher = Publisher(backend, rate)
    try:
        service.connect(timeout=10)
        if not rec.attached.wait(STEP_TIMEOUT):
            raise RuntimeError("no subscription_ack")
        publisher.start()
        if not rec.wait(lambda: len(rec.events) >= 20):
            raise RuntimeError("the stream did not start")
        time.sleep(rng.uniform(0.0, HEARTBEAT_INTERVAL_MS / 1000.0))  # a random heartbeat phase

        with rec.changed:
            n_states = len(rec.states)
        t_fault = time.perf_counter()
        if fault == "drop":
            proxy.reset_peer()
        else:
            proxy.blackhole(True)

        def detected() -> bool:
            return any(s is ConnectionState.RECONNECTING for s, _ in rec.states[n_states:])

        ok = rec.wait(detected)
        if fault != "drop":
            proxy.blackhole(False)
        if not ok:
            raise RuntimeError(f"{transport}/{fault}: no 'reconnecting' within {STEP_TIMEOUT} s")
        t_detect = next(t for s, t in rec.states[n_states:] if s is ConnectionState.RECONNECTING)

        def resumed() -> bool:
            after = {i for i, t in publisher.sent if t > t_fault}
            return any(e in after for e, _ in rec.events[-50:])

        if not rec.wait(resumed):
            raise RuntimeError(f"{transport}/{fault}: no event published after the fault arrived")
        after_fault = {i for i, t in publisher.sent if t > t_fault}
        t_resume = next(t for e, t in rec.events if e in after_fault)
        time.sleep(0.1)  # a little more stream after the recovery
        publisher.stop()
        last = publisher.sent[-1][0]
        if not rec.wait(lambda: any(e == last for e, _ in rec.events[-20:])):
            raise RuntimeError(f"{transport}/{fault}: the last event {last} never arrived")
    finally:
        publisher.stop()
        service.disconnect()
        proxy.blackhole(False)
    published = [i for i, _ in publisher.sent]
    delivered = [e for e, _ in rec.events]
    lost, dup, disorder = _check(published, delivered)
    return Outcome((t_detect - t_fault) * 1000, (t_resume - t_fault) * 1000, len(delivered), lost, dup, disorder)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 repetitions each")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per transport and fault (default 10)")
    ap.add_argument("--reconnect-interval-ms", type=float, default=1000.0, help="the SDK default is 1000")
    ap.add_argument("--rate", type=float, default=500.0, help="events/s published during each repetition")
    ap.add_argument("--transports", default="ws,sse")
    ap.add_argument("--faults", default="drop,half-open")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--verbose", action="store_true", help="log the service's decisions (DEBUG) to stderr")
    args = ap.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    if args.verbose:
        logging.basicConfig(format="%(relativeCreated)9.1f %(threadName)-22s %(name)s: %(message)s")
        logging.getLogger("magk_client.service").setLevel(logging.DEBUG)
    else:
        logging.getLogger("magk_client").setLevel(logging.CRITICAL)  # each fault is logged at WARNING
    reps = args.reps or (3 if args.quick else 10)
    transports = [t for t in args.transports.split(",") if t]
    faults = [f for f in args.faults.split(",") if f]
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    print(
        f"recovery: {reps} repetitions each; heartbeat {HEARTBEAT_INTERVAL_MS}+{HEARTBEAT_TIMEOUT_MS} ms, "
        f"reconnect_interval_ms={args.reconnect_interval_ms:g} (full jitter), {args.rate:g} events/s published",
        flush=True,
    )
    rows: List[Tuple[str, str, List[Outcome]]] = []
    with Backend(pace=0.0, replay_size=100000) as backend, FaultProxy("127.0.0.1", backend.port) as proxy:
        for transport in transports:
            for fault in faults:
                outcomes: List[Outcome] = []
                for i in range(reps):
                    o = one_rep(backend, proxy, transport, fault, args.reconnect_interval_ms, args.rate, rng)
                    outcomes.append(o)
                    print(
                        f"  {transport:3s} {fault:9s} #{i + 1:2d}: detect {o.detect_ms:7.1f} ms  "
                        f"resume {o.resume_ms:7.1f} ms  delivered {o.delivered:5d}  "
                        f"lost {o.lost} dup {o.duplicated} disorder {o.disordered}",
                        flush=True,
                    )
                rows.append((transport, fault, outcomes))

    print(f"\n== recovery summary (medians of {reps}; min-max in brackets; {time.monotonic() - t0:.0f} s in all)")
    print(f"{'transport':9s} {'fault':9s} {'detect ms':>22s} {'resume ms':>22s} {'lost/dup/disorder':>18s}")
    bad = 0
    for transport, fault, outcomes in rows:
        d = [o.detect_ms for o in outcomes]
        r = [o.resume_ms for o in outcomes]
        errors = (sum(o.lost for o in outcomes), sum(o.duplicated for o in outcomes), sum(o.disordered for o in outcomes))
        bad += sum(errors)
        print(
            f"{transport:9s} {fault:9s} {statistics.median(d):8.0f} [{min(d):5.0f}-{max(d):5.0f}] "
            f"{statistics.median(r):8.0f} [{min(r):5.0f}-{max(r):5.0f}] {'/'.join(map(str, errors)):>18s}"
        )
    print("no event lost, duplicated or out of order" if not bad else f"PROBLEM: {bad} delivery error(s)")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
