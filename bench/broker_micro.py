"""Micro-benchmark of the Redis broker scripts: enqueue, dequeue with lease, ack (prints, asserts nothing).

Usage: ``REDIS_URL=redis://localhost:6379/0 python bench/broker_micro.py [--jobs 20000] [--batch 128]``.
Uses a throwaway key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchenv import delete_redis_prefix  # noqa: E402  (bench/ is on sys.path)

from workers.broker import Broker, Placement, Popped, ready_score


def report(label: str, jobs: int, calls: int, seconds: float) -> None:
    rate = jobs / seconds
    print(f"{label:<28} {jobs:>7} jobs {calls:>5} calls {seconds * 1000:>8.1f} ms {rate:>10,.0f} jobs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=128)
    opts = parser.parse_args()
    url = os.environ.get("REDIS_URL")
    if not url:
        sys.exit("REDIS_URL is not set")

    client = redis.Redis.from_url(url, decode_responses=True)
    prefix = f"jqbench-{uuid.uuid4().hex}"
    broker = Broker(client, prefix)
    broker.load_scripts()
    n, batch = opts.jobs, opts.batch
    print(f"redis {client.info('server')['redis_version']} at {url}; {n} jobs, batch {batch}")
    try:
        placements = [Placement(f"job-{i}", "default", ready_score(0, i + 1)) for i in range(n)]
        t0 = time.perf_counter()
        broker.enqueue(placements)
        report("enqueue (1,000 per call)", n, -(-n // 1000), time.perf_counter() - t0)

        leased: list[Popped] = []
        calls = 0
        t0 = time.perf_counter()
        while True:
            got = broker.dequeue(["default"], batch, 30_000, "bench").jobs
            calls += 1
            if not got:
                break
            leased += got
        report(f"dequeue+lease ({batch} per call)", len(leased), calls, time.perf_counter() - t0)

        t0 = time.perf_counter()
        for start in range(0, len(leased), batch):
            broker.extend([(j.id, j.token, j.queue) for j in leased[start : start + batch]], 30_000)
        report(f"extend ({batch} per call)", len(leased), -(-len(leased) // batch), time.perf_counter() - t0)

        t0 = time.perf_counter()
        acked = 0
        for start in range(0, len(leased), batch):
            acked += broker.ack([(j.id, j.token) for j in leased[start : start + batch]])
        report(f"ack ({batch} per call)", acked, -(-len(leased) // batch), time.perf_counter() - t0)

        broker.enqueue(placements)
        t0 = time.perf_counter()
        done = rounds = 0
        while True:
            got = broker.dequeue(["default"], batch, 30_000, "bench").jobs
            if not got:
                break
            done += broker.ack([(j.id, j.token) for j in got])
            rounds += 1
        report("loop round: dequeue + ack", done, 2 * rounds + 1, time.perf_counter() - t0)
    finally:
        delete_redis_prefix(client, prefix)
        client.close()


if __name__ == "__main__":
    main()
