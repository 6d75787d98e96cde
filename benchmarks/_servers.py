"""Loopback servers shared by the SDK-level benchmarks (``bench_service_*.py``).

Two kinds of server, both on 127.0.0.1, port 0:

* the reference :class:`~magk_client.testing.backend.Backend` (aiohttp), driven by
  ``publish_many`` (throughput) and ``publish`` at a fixed rate (latency);
* :func:`raw_server`, a raw-socket server (``magk_client.testing.raw``) that answers the WebSocket upgrade (``/ws/...``) or the
  SSE request (``/events/...``) by hand and then writes pre-framed bytes, so that it is not the
  bottleneck. The path picks what it sends:

  ``/ws/blast``, ``/events/blast``
      the N pre-framed 150-byte messages of the blob built at start, in one ``sendall``, then a
      close frame (WS) or the end of the body (SSE);
  ``/ws/paced?rate=R&duration=D``, ``/events/paced?...``
      R messages per second for D seconds, each carrying ``data.t = time.perf_counter()`` taken
      just before its frame is written, then the end.

All servers run in a :class:`ServerHost`, by default in a child process (spawned), so the client
under test has the interpreter (and its GIL) to itself, as it would against a real server. On
Linux ``time.perf_counter()`` is ``CLOCK_MONOTONIC``, one clock for every process of the machine,
so the send timestamps written by the child and the receive times read by the parent agree.
``in_process=True`` runs the same host on a thread instead (same code, over a Pipe).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import multiprocessing.connection
import os
import socket
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from magk_client import RealtimeMessage, RealtimeService
from magk_client.testing.backend import Backend
from magk_client.testing.raw import (
    OP_CLOSE,
    OP_TEXT,
    Conn,
    RawServer,
    Request,
    chunk,
    close_payload,
    sse_event,
    ws_frame,
)

MESSAGE_SIZE = 150
#: per-run guard: no single measured loop may take longer than this (seconds)
RUN_TIMEOUT = 60.0
#: latency samples dropped at the start of each run (connection warm-up)
WARMUP = 50


# ---------------------------------------------------------------------------------------- messages


def event(i: int, size: int = MESSAGE_SIZE, t: Optional[float] = None, with_id: bool = True) -> Dict[str, Any]:
    """A ``node_progress_update`` envelope whose compact JSON is ``size`` bytes (with its id).

    ``t`` (a ``perf_counter()`` reading) goes into ``data.t`` for latency runs. Without
    ``with_id`` the id is left to the Backend (``e-<n>``, plus a timestamp it adds).
    """
    base: Dict[str, Any] = {}
    if with_id:
        base["id"] = f"e-{i:07d}"
    base.update(
        {
            "type": "node_progress_update",
            "workflowId": "wf-1",
            "nodeId": "n-1",
            "data": {"progress": {"current": i % 10, "total": 10}, "p": ""},
        }
    )
    if t is not None:
        base["data"]["t"] = t
    raw = len(json.dumps(base, separators=(",", ":")))
    base["data"]["p"] = "x" * max(0, size - raw)
    return base


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


WS_CLOSE_1000 = ws_frame(OP_CLOSE, close_payload(1000))


def paced(rate: float, duration: float) -> Iterator[int]:
    """0, 1, ... ``rate * duration`` - 1, each yielded at its due time (``rate`` per second)."""
    start = time.perf_counter()
    for i in range(int(rate * duration)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield i


# ---------------------------------------------------------------------------------------- raw server


def raw_server(n_blast: int) -> RawServer:
    """The raw WebSocket + SSE server of the module docstring (a :class:`RawServer` of
    magk_client.testing.raw, without socket timeouts: a profiled client may read slowly)."""
    msgs = [event(i) for i in range(n_blast)]
    ws_blob = b"".join(ws_frame(OP_TEXT, dumps(m)) for m in msgs) + WS_CLOSE_1000
    body = b"".join(sse_event(dumps(m), str(m["id"])) for m in msgs)
    sse_blob = b"".join(chunk(body[i : i + 65536]) for i in range(0, len(body), 65536)) + b"0\r\n\r\n"

    def handle(conn: Conn, req: Request) -> None:
        target = urlsplit(req.path)
        query = {k: v[0] for k, v in parse_qs(target.query).items()}
        websocket = target.path.startswith("/ws/")
        if websocket:
            conn.upgrade(req)
        else:
            conn.head(200, [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")], chunked=True)
        if target.path.endswith("/blast"):
            conn.send(ws_blob if websocket else sse_blob)
        elif target.path.endswith("/paced"):
            _paced(conn, websocket, float(query.get("rate", "1000")), float(query.get("duration", "5")))
        if websocket:
            conn.drain(5.0)  # wait (bounded) for the client to go, so it reads the close frame, not a reset
        else:
            conn.sock.shutdown(socket.SHUT_WR)

    return RawServer(handle, timeout=None)


def _paced(conn: Conn, websocket: bool, rate: float, duration: float) -> None:
    for i in paced(rate, duration):
        msg = event(i, t=time.perf_counter())
        payload = dumps(msg)
        conn.send(ws_frame(OP_TEXT, payload) if websocket else chunk(sse_event(payload, str(msg["id"]))))
    conn.send(WS_CLOSE_1000 if websocket else b"0\r\n\r\n")


# ---------------------------------------------------------------------------------------- host


def _host_main(pipe: multiprocessing.connection.Connection, n_blast: int) -> None:
    """The server side: a Backend and a RawServer, driven by commands over ``pipe``."""
    backend = Backend(pace=0.0, replay_size=1000)
    backend.start()
    raw = raw_server(n_blast)
    prepared: List[Dict[str, Any]] = []
    pipe.send({"backend_ws": backend.websocket_url, "backend_sse": backend.event_source_url, "raw_port": raw.port})
    try:
        while True:
            if not pipe.poll(600.0):
                return  # the parent is gone or stuck: do not outlive it
            cmd, args = pipe.recv()
            if cmd == "stop":
                return
            if cmd == "prepare":
                prepared = [event(i, with_id=False) for i in range(int(args[0]))]
                pipe.send(len(prepared))
            elif cmd == "publish":
                n = int(args[0])
                pipe.send(len(backend.publish_many(prepared[:n])))
            elif cmd == "paced":
                rate, duration = float(args[0]), float(args[1])
                for i in paced(rate, duration):
                    backend.publish(event(i, t=time.perf_counter(), with_id=False))
                pipe.send(int(rate * duration))
            elif cmd == "connections":
                pipe.send(len(backend.open_connections))
            else:
                pipe.send(f"unknown command {cmd!r}")
    finally:
        raw.close()
        backend.stop(timeout=5.0)


class ServerHost:
    """The benchmark servers, in a child process (default) or on a thread of this one.

    Commands are synchronous except :meth:`begin`, whose answer :meth:`end` waits for, so the
    caller can run a client loop on its own thread meanwhile.
    """

    def __init__(self, n_blast: int, *, in_process: bool = False) -> None:
        self.in_process = in_process
        self._proc: Optional[Any] = None
        self._thread: Optional[threading.Thread] = None
        if in_process:
            mine, theirs = multiprocessing.Pipe()
            self._thread = threading.Thread(target=_host_main, args=(theirs, n_blast), name="server-host", daemon=True)
            self._thread.start()
        else:
            ctx = multiprocessing.get_context("spawn")
            mine, theirs = ctx.Pipe()
            self._proc = ctx.Process(target=_host_main, args=(theirs, n_blast), name="server-host", daemon=True)
            self._proc.start()
        self._pipe = mine
        deadline = time.monotonic() + 60.0
        while not self._pipe.poll(0.1):
            if self._proc is not None and not self._proc.is_alive():
                raise RuntimeError(f"the server host process died at start (exit code {self._proc.exitcode})")
            if time.monotonic() > deadline:
                raise RuntimeError("the server host did not start within 60 s")
        info: Dict[str, Any] = self._pipe.recv()
        self.backend_ws: str = info["backend_ws"]
        self.backend_sse: str = info["backend_sse"]
        self.raw_port: int = int(info["raw_port"])
        self._pending = False

    def raw_url(self, kind: str, path: str) -> str:
        scheme, prefix = ("ws", "/ws/") if kind == "ws" else ("http", "/events/")
        return f"{scheme}://127.0.0.1:{self.raw_port}{prefix}{path}"

    def begin(self, cmd: str, *args: Any) -> None:
        assert not self._pending, "one command at a time"
        self._pipe.send((cmd, args))
        self._pending = True

    def end(self, timeout: float = RUN_TIMEOUT) -> Any:
        if not self._pipe.poll(timeout):
            raise TimeoutError(f"the server host did not answer within {timeout} s")
        self._pending = False
        return self._pipe.recv()

    def call(self, cmd: str, *args: Any, timeout: float = RUN_TIMEOUT) -> Any:
        self.begin(cmd, *args)
        return self.end(timeout)

    def wait_connections(self, n: int, timeout: float = 10.0) -> None:
        """Wait until the Backend counts ``n`` open connections (so nothing published is missed)."""
        deadline = time.monotonic() + timeout
        while self.call("connections") < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Backend did not see {n} connection(s) within {timeout} s")
            time.sleep(0.005)

    def close(self) -> None:
        try:
            if self._pending:
                self.end(RUN_TIMEOUT)
            self._pipe.send(("stop", ()))
        except (OSError, EOFError, TimeoutError):
            pass
        if self._proc is not None:
            self._proc.join(10.0)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5.0)
        if self._thread is not None:
            self._thread.join(10.0)


# ---------------------------------------------------------------------------------------- SDK runners

#: the event type the servers send
EVENT_TYPE = "node_progress_update"


class Counter:
    """The no-op callback: count, and set ``done`` at ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.done = threading.Event()

    def __call__(self, message: RealtimeMessage) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()


def sdk_throughput(
    make_service: Callable[[str], RealtimeService], host: ServerHost, url: str, n: int, backend: bool
) -> float:
    """RealtimeService to a counting no-op callback: messages/s (shared by the WS and SSE benchmarks)."""
    counter = Counter(n)
    attached = threading.Event()
    service = make_service(url)
    service.subscribe(EVENT_TYPE, counter)
    service.subscribe("subscription_ack", lambda _m: attached.set())
    try:
        service.connect(timeout=10)
        if backend and not attached.wait(10):
            raise RuntimeError("no subscription_ack from the Backend")
        start = time.perf_counter()
        if backend:
            host.begin("publish", n)
        ok = counter.done.wait(RUN_TIMEOUT)
        elapsed = time.perf_counter() - start
        health = service.get_connection_health()
        if backend:
            host.end()
    finally:
        service.disconnect()
    if not ok:
        raise RuntimeError(
            f"SDK delivered {counter.count} of {n} in {RUN_TIMEOUT} s "
            f"(dispatch_dropped={health.dispatch_dropped}, errors={health.errors[-3:]})"
        )
    return n / elapsed


def sdk_latency(
    make_service: Callable[[str], RealtimeService],
    host: ServerHost,
    url: str,
    count: int,
    backend: bool,
    rate: float,
    duration: float,
) -> List[float]:
    """One-way latency samples (s), server send to callback, at ``rate`` msg/s."""
    samples: List[float] = []
    done = threading.Event()
    attached = threading.Event()
    clock = time.perf_counter

    def on_event(message: RealtimeMessage) -> None:
        samples.append(clock() - message.data["t"])
        if len(samples) == count:
            done.set()

    service = make_service(url)
    service.subscribe(EVENT_TYPE, on_event)
    service.subscribe("subscription_ack", lambda _m: attached.set())
    try:
        service.connect(timeout=10)
        if backend:
            if not attached.wait(10):
                raise RuntimeError("no subscription_ack from the Backend")
            host.begin("paced", rate, duration)
        if not done.wait(duration + 30):
            raise RuntimeError(f"SDK delivered {len(samples)} of {count} paced messages")
        if backend:
            host.end()
    finally:
        service.disconnect()
    return samples


# ---------------------------------------------------------------------------------------- reporting


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``values`` need not be sorted)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def latency_summary(samples_s: Sequence[float]) -> Tuple[float, float, float]:
    """(p50, p99, max) in milliseconds."""
    ms = [s * 1000.0 for s in samples_s]
    return percentile(ms, 50), percentile(ms, 99), max(ms) if ms else float("nan")


def interleave(
    runs: int, cases: Dict[str, Callable[[], float]], log: Callable[[str], None] = print
) -> Dict[str, List[float]]:
    """Run each case ``runs`` times, alternating the order each round; return the rates."""
    names = list(cases)
    results: Dict[str, List[float]] = {name: [] for name in names}
    for i in range(runs):
        order = names if i % 2 == 0 else list(reversed(names))
        for name in order:
            rate = cases[name]()
            results[name].append(rate)
            log(f"  run {i + 1} {name:12s} {rate:10,.0f} msg/s")
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------------------- profiling


class ThreadProfiles:
    """cProfile the SDK's reader and dispatcher threads (``--profile``).

    cProfile sees only the thread that enables it, so while this is active ``threading.Thread.run``
    is wrapped: a thread named ``magk-reader-*`` or ``magk-dispatcher-*`` (the service's documented
    thread names) runs under a profiler of its own. Nothing in the SDK is changed. cProfile inflates
    small calls: read the ranking, not the absolute times (py-spy gives an undistorted view).
    """

    KINDS = ("reader", "dispatcher")

    def __init__(self) -> None:
        self.profiles: Dict[str, List[Any]] = {kind: [] for kind in self.KINDS}
        self._orig: Any = None

    def __enter__(self) -> ThreadProfiles:
        import cProfile

        orig = self._orig = threading.Thread.run
        profiles = self.profiles

        def run(thread: threading.Thread) -> None:
            kind = next((k for k in profiles if thread.name.startswith(f"magk-{k}-")), None)
            if kind is None:
                orig(thread)
                return
            prof = cProfile.Profile()
            profiles[kind].append(prof)
            prof.enable()
            try:
                orig(thread)
            finally:
                prof.disable()

        threading.Thread.run = run  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.run = self._orig  # type: ignore[method-assign]

    def report(self, limit: int = 18) -> None:
        import io
        import pstats

        for kind, profs in self.profiles.items():
            if not profs:
                print(f"\n--- no {kind} thread was seen ---")
                continue
            out = io.StringIO()
            stats = pstats.Stats(profs[0], stream=out)
            for prof in profs[1:]:
                stats.add(prof)
            stats.sort_stats("tottime").print_stats(limit)
            text = out.getvalue()
            start = text.find("   ncalls")
            print(f"\n--- {kind} thread(s), by own time (cProfile) ---")
            print(text[start:].rstrip() if start >= 0 else text.rstrip())


# ---------------------------------------------------------------------------------------- driver

#: ``fn(host, url, n, backend) -> messages/s``
ThroughputFn = Callable[["ServerHost", str, int, bool], float]
#: ``fn(host, url, count, backend, rate, duration) -> one-way latencies in seconds``
LatencyFn = Callable[["ServerHost", str, int, bool, float, float], List[float]]


def bench_main(
    *,
    kind: str,
    doc: str,
    raw: Tuple[ThroughputFn, LatencyFn],
    sdk: Tuple[ThroughputFn, LatencyFn],
    labels: Tuple[str, str],
    targets: str,
    argv: Optional[List[str]] = None,
) -> int:
    """The command line and the run plan shared by ``bench_service_ws.py`` and ``bench_service_sse.py``."""
    import argparse
    import logging

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: N=20000, 3 runs, 1 s of latency")
    ap.add_argument("-n", type=int, default=None, help="messages per throughput run (default 200000)")
    ap.add_argument("--runs", type=int, default=None, help="interleaved runs per client (default 5)")
    ap.add_argument("--rate", type=float, default=1000.0, help="latency: messages per second (default 1000)")
    ap.add_argument("--duration", type=float, default=None, help="latency: seconds per run (default 5)")
    ap.add_argument("--servers", default="raw,backend", help="comma-separated: raw, backend (default both)")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    ap.add_argument("--in-process", action="store_true", help="run the servers on a thread of this process")
    ap.add_argument("--profile", action="store_true", help="only cProfile the SDK threads on one raw-server run")
    args = ap.parse_args(argv)
    # The SDK logs each connection loss at WARNING (a blast run ends with the server closing).
    logging.getLogger("magk_client").setLevel(logging.ERROR)
    n = args.n or (20_000 if args.quick else 200_000)
    runs = args.runs or (3 if args.quick else 5)
    duration = args.duration or (1.0 if args.quick else 5.0)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for server in servers:
        if server not in ("raw", "backend"):
            ap.error(f"unknown server {server!r}")
    title = "WebSocket" if kind == "ws" else "SSE"

    t0 = time.monotonic()
    host = ServerHost(n, in_process=args.in_process)
    summary: Dict[str, Dict[str, float]] = {}
    latency: Dict[str, Tuple[float, float, float]] = {}
    try:
        urls = {"raw": host.raw_url(kind, "blast"), "backend": host.backend_ws if kind == "ws" else host.backend_sse}
        if args.profile:
            with ThreadProfiles() as profiles:
                rate = sdk[0](host, urls["raw"], n, False)
            print(f"RealtimeService over {title} under cProfile: {rate:,.0f} msg/s ({n} messages, raw server)")
            profiles.report()
            return 0
        if "backend" in servers:
            host.call("prepare", n)
        where = "in this process" if args.in_process else "in a child process"
        print(f"{title}: {n} messages of ~{MESSAGE_SIZE} bytes, {runs} interleaved runs per client, servers {where}")
        print(f"  (a) raw: {labels[0]}\n  (b) sdk: {labels[1]}", flush=True)
        for server in servers:
            url = urls[server]
            backend = server == "backend"
            print(f"\n[{server} server] {url}", flush=True)
            cases: Dict[str, Callable[[], float]] = {
                "raw": functools.partial(raw[0], host, url, n, backend),
                "sdk": functools.partial(sdk[0], host, url, n, backend),
            }
            results = interleave(runs, cases, lambda line: print(line, flush=True))
            summary[server] = {name: median(rates) for name, rates in results.items()}

        if not args.no_latency:
            count = int(args.rate * duration)
            print(f"\nlatency at {args.rate:g} msg/s for {duration:g} s ({count} messages; first {WARMUP} dropped)")
            for server in servers:
                backend = server == "backend"
                paced = host.raw_url(kind, f"paced?rate={args.rate:g}&duration={duration:g}")
                url = urls["backend"] if backend else paced
                for name, (_tp, lat) in (("raw", raw), ("sdk", sdk)):
                    samples = lat(host, url, count, backend, args.rate, duration)[WARMUP:]
                    latency[f"{server}/{name}"] = latency_summary(samples)
                    p50, p99, worst = latency[f"{server}/{name}"]
                    print(f"  {server:7s} {name}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {worst:.3f} ms", flush=True)
    finally:
        host.close()

    print(f"\n== {title} summary: medians of {runs} runs, N={n}, {time.monotonic() - t0:.0f} s in all")
    print(f"{'server':8s} {'(a) raw':>16s} {'(b) sdk':>16s} {'ratio b/a':>10s}")
    for server, med in summary.items():
        print(f"{server:8s} {med['raw']:>10,.0f} msg/s {med['sdk']:>10,.0f} msg/s {med['sdk'] / med['raw']:>10.2f}")
    if latency:
        print(f"\none-way latency, server send -> client, at {args.rate:g} msg/s (ms):")
        print(f"{'server/client':16s} {'p50':>8s} {'p99':>8s} {'max':>8s}")
        for key, (p50, p99, worst) in latency.items():
            print(f"{key:16s} {p50:8.3f} {p99:8.3f} {worst:8.3f}")
    print(f"targets: {targets}")
    return 0
