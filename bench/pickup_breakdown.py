"""Where a pickup's time goes, hop by hop: enqueue → pusher → marker → waker → loop → dequeue → claim.

Usage (servers from ``jobqueue_site.embedded``; its own database and Redis prefix, like every bench)::

    .venv/bin/python -m jobqueue_site.embedded run --profile test -- \
        .venv/bin/python bench/pickup_breakdown.py

The same chain as an idle worker's, in one process: a thread blocked in ``BZPOPMIN`` on the queue's
marker (the worker's waker) hands a wake-up to the main thread, which runs ``dequeue`` and the
claim-only settle statement. Both ends share one GIL here, so the total is somewhat above the
``created_at → started_at`` that bench/throughput.py measures across processes; the split is the
point. Prints p50/p95 per hop over ``--samples`` single jobs, 20 ms apart, after 20 warm-ups.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

from benchenv import delete_redis_prefix, isolate  # noqa: E402  (bench/ is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOPS = (
    "enqueue() call (INSERT + commit)",
    "hand-over to the pusher thread",
    "enqueue.lua round trip",
    "marker seen by the waker",
    "waker -> loop thread",
    "dequeue.lua round trip",
    "claim statement",
    "enqueue() call -> job claimed",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    opts = parser.parse_args()
    env = isolate("jobqueue_bench")

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from jobs import services
    from jobs.dispatch import get_broker, redis_client
    from workers.broker import Broker

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job, jobs_idempotencykey CASCADE")
    broker = get_broker()
    blocking = Broker(redis_client(socket_timeout=10), prefix=settings.JOBQUEUE_REDIS_PREFIX)
    stamps: dict[str, float] = {}
    send = Broker.enqueue

    def timed_send(self: Broker, placements: list) -> None:  # the pusher thread's script call
        stamps["push_start"] = time.perf_counter()
        send(self, placements)
        stamps["push_end"] = time.perf_counter()

    Broker.enqueue = timed_send  # type: ignore[method-assign]
    wakeups: queue.SimpleQueue = queue.SimpleQueue()

    def waker() -> None:
        while True:
            blocking.wait_for_work(["default"], 1.0)
            stamps["marker"] = time.perf_counter()
            wakeups.put(True)

    threading.Thread(target=waker, daemon=True).start()
    rows = []
    try:
        for i in range(opts.samples + 20):
            time.sleep(0.02)
            while not wakeups.empty():  # idle-timeout wake-ups of the waker
                wakeups.get()
            stamps.clear()
            t0 = time.perf_counter()
            services.enqueue("noop")
            t1 = time.perf_counter()
            wakeups.get(timeout=5)
            t2 = time.perf_counter()
            popped = broker.dequeue(["default"], 1, 30_000, "pickup-probe").jobs
            t3 = time.perf_counter()
            claimed = services.settle(broker, [], popped, "pickup-probe")
            t4 = time.perf_counter()
            if i >= 20 and claimed:
                rows.append(
                    (
                        t1 - t0,
                        stamps["push_start"] - t1,
                        stamps["push_end"] - stamps["push_start"],
                        stamps["marker"] - stamps["push_end"],
                        t2 - stamps["marker"],
                        t3 - t2,
                        t4 - t3,
                        t4 - t0,
                    )
                )
    finally:
        delete_redis_prefix(redis_client(), env["JOBQUEUE_REDIS_PREFIX"])
    print(f"pickup chain, {len(rows)} samples (ms; a negative hop: the marker arrived before the reply)")
    for k, name in enumerate(HOPS):
        column = sorted(row[k] * 1000 for row in rows)
        p95 = column[int(len(column) * 0.95)]
        print(f"  {name:34s} p50 {statistics.median(column):6.3f}   p95 {p95:6.3f}")


if __name__ == "__main__":
    main()
