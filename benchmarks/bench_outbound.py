"""Outbound delivery benchmark: senders hammering a backend that drops connections, with and without
acknowledgements; and the accuracy of the send rate limit.

Loopback only: the reference Backend in this process, a RealtimeService (WebSocket only, or SSE only)
with fast retries and an offline queue large enough never to drop. ``--threads`` threads call
``send_message`` as fast as they can for ``--seconds`` while the backend aborts every connection
(TCP reset) each ``--drop-every`` seconds. Then the backend's records are compared with what the
client accepted:

    accepted    send_message returned (True: written, False: queued)
    processed   distinct accepted ids the backend processed
    lost        accepted ids never processed
    repeated    ids processed more than once
    + the client's health: acknowledged, resent, unconfirmed, at_most_once

With acks (the default backend) ``lost`` and ``repeated`` must be 0. Without (``Backend(acks=False)``)
delivery is at most once: ``lost`` may be > 0 and must not exceed the client's ``unconfirmed``.

On SSE every message is one ``POST /messages``; the senders wait for their answer (``wait=True``),
else the offline queue grows far faster than POSTs drain it.

The rate part sends ``--rate-n`` messages at once under ``max_messages_per_second=--rate`` and reports
the most messages the backend received in any 2 s window against ``burst + 2 * rate``.

    python benchmarks/bench_outbound.py [--quick] [--threads 16] [--seconds 10] [--drop-every 0.5]
                                        [--transports ws,sse] [--acks on,off] [--rate 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from magk_client import RealtimeService
from magk_client.errors import MagkError
from magk_client.testing.backend import Backend

FAST: Dict[str, Any] = dict(
    fallback_to_secondary=False,
    reconnect_interval_ms=20,
    max_reconnect_interval_ms=200,
    heartbeat_interval_ms=2000,
    heartbeat_timeout_ms=1000,
    connection_timeout_ms=3000,
    message_timeout_ms=3000,
    min_stable_connection_ms=0,
    max_reconnect_attempts=100000,
    circuit_breaker_threshold=100000,
    max_queue_size=10_000_000,
    max_queue_bytes=1 << 32,
)


def _service(backend: Backend, transport: str, **extra: Any) -> RealtimeService:
    options = dict(FAST, **extra)
    if transport == "ws":
        options.update(websocket_url=backend.websocket_url, event_source_url=None)
    else:
        options.update(websocket_url=None, event_source_url=backend.event_source_url)
    return RealtimeService(**options)


def hammer(transport: str, acks: bool, threads: int, seconds: float, drop_every: float) -> Dict[str, Any]:
    with Backend(pace=0.0, acks=acks, processed_ids_size=10_000_000) as backend:
        service = _service(backend, transport)
        accepted: List[List[str]] = [[] for _ in range(threads)]
        stop = threading.Event()
        drops = [0]

        wait = transport == "sse"  # one POST at a time: senders wait for their 2xx, or the queue grows without end

        def send(k: int) -> None:
            out, i = accepted[k], 0
            while not stop.is_set():
                mid = f"t{k}-{i}"
                i += 1
                try:
                    service.send_message({"type": "client_note", "id": mid, "data": {"k": k, "i": i}}, wait=wait,
                                         timeout=120)
                except MagkError:
                    continue
                out.append(mid)

        def drop() -> None:
            while not stop.wait(drop_every):
                drops[0] += backend.drop_connections() > 0

        with service:
            service.connect(timeout=10)
            workers = [threading.Thread(target=send, args=(k,)) for k in range(threads)]
            workers.append(threading.Thread(target=drop))
            started = time.monotonic()
            for t in workers:
                t.start()
            stop.wait(seconds)
            stop.set()
            for t in workers:
                t.join()
            sent_for = time.monotonic() - started
            ids = [m for out in accepted for m in out]
            sentinel = "sentinel"
            service.send_message({"type": "client_note", "id": sentinel, "data": {}}, wait=True, timeout=300)
            backend.wait_for_processed([sentinel], timeout=120)
            deadline = time.monotonic() + 300
            while acks and time.monotonic() < deadline:  # acknowledged means processed
                health = service.get_connection_health()
                if health.queue_size == 0 and health.messages_unacknowledged == 0:
                    break
                time.sleep(0.05)
            health = service.get_connection_health()
        counts = backend.processed_counts
    lost = sum(1 for m in ids if m not in counts)
    repeated = sum(1 for m in ids if counts.get(m, 0) > 1)
    return {
        "transport": transport,
        "acks": acks,
        "accepted": len(ids),
        "rate": len(ids) / sent_for,
        "drops": drops[0],
        "lost": lost,
        "repeated": repeated,
        "acknowledged": health.messages_acknowledged,
        "resent": health.messages_resent,
        "unconfirmed": health.messages_unconfirmed,
        "at_most_once": health.outbound_at_most_once,
        "reconnects": health.total_reconnects,
    }


def rate_accuracy(rate: float, n: int) -> Dict[str, Any]:
    with Backend(pace=0.0) as backend:
        service = _service(backend, "ws", max_messages_per_second=rate)
        burst = max(1, int(-(-rate // 10)))
        ids = [f"r{i}" for i in range(n)]
        with service:
            service.connect(timeout=10)
            for mid in ids:
                service.send_message({"type": "client_note", "id": mid, "data": {}})
            backend.wait_for_processed(ids, timeout=n / rate * 3 + 30)
            waits = service.get_connection_health().rate_limit_waits
        wanted = set(ids)
        times = sorted(m.received_at for m in backend.received_messages if m.message.get("id") in wanted)
    most, j = 0, 0
    for i, start in enumerate(times):  # two pointers: the most arrivals in any 2 s window
        while j < len(times) and times[j] - start <= 2.0:
            j += 1
        most = max(most, j - i)
    limit = burst + 2 * rate
    return {"rate": rate, "burst": burst, "n": n, "most_in_2s": most, "limit_2s": limit, "ratio": most / limit,
            "waits": waits, "took": times[-1] - times[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s runs, websocket only")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--drop-every", type=float, default=0.5)
    parser.add_argument("--transports", default="ws,sse")
    parser.add_argument("--acks", default="on,off")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rate-n", type=int, default=1000)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.transports, args.rate_n = 3.0, "ws", 500
    print(f"{args.threads} senders for {args.seconds:g} s, backend drops every connection each "
          f"{args.drop_every:g} s")
    header = ("transport", "acks", "accepted", "msg/s", "drops", "lost", "repeated", "acked", "resent",
              "unconfirmed", "at_most_once")
    print("  ".join(f"{h:>12}" for h in header))
    for transport in args.transports.split(","):
        for acks in args.acks.split(","):
            r = hammer(transport, acks == "on", args.threads, args.seconds, args.drop_every)
            row = (r["transport"], "on" if r["acks"] else "off", r["accepted"], f"{r['rate']:.0f}", r["drops"],
                   r["lost"], r["repeated"], r["acknowledged"], r["resent"], r["unconfirmed"], r["at_most_once"])
            print("  ".join(f"{v!s:>12}" for v in row), flush=True)
    r = rate_accuracy(args.rate, args.rate_n)
    print(f"\nrate limit {r['rate']:g}/s (burst {r['burst']}), {r['n']} messages sent at once: at most "
          f"{r['most_in_2s']} in any 2 s (limit {r['limit_2s']:g}, {r['ratio']:.3f} of it); all arrived in "
          f"{r['took']:.2f} s; {r['waits']} waits counted")


if __name__ == "__main__":
    main()
