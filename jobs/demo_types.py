"""Demo job types that exercise every path of the engine (and `noop` for benchmarks).

Registered by ``jobs.apps`` when ``JOBQUEUE_DEMO_TYPES`` is on (the default: tests, benchmarks and
the README use them); a deployment that wants only its own types turns it off.
"""

from __future__ import annotations

import hashlib
import random
import time

from jobs.context import current_job
from jobs.registry import job


def _sleep_cooperatively(seconds: float) -> None:
    """Sleep in short steps so a cancel or timeout is noticed promptly."""
    ctx = current_job()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if ctx is not None:
            ctx.check_cancelled()
        time.sleep(min(left, 0.1))


@job("noop", description="Does nothing; used by the benchmarks.")
def noop(*args: object, **kwargs: object) -> None:
    return None


@job("email.send", queue="default", max_attempts=3, timeout=30)
def send_email(to: str, subject: str = "", body: str = "", failure_rate: float = 0.0) -> dict:
    """Simulates sending an email; `failure_rate` (0..1) makes it fail at random."""
    if not isinstance(to, str) or "@" not in to:
        raise ValueError(f"'to' must be an email address, got {to!r}")
    if not 0 <= float(failure_rate) <= 1:
        raise ValueError("failure_rate must be between 0 and 1")
    _sleep_cooperatively(random.uniform(0.01, 0.05))
    if random.random() < float(failure_rate):
        raise ConnectionError(f"simulated SMTP failure sending to {to}")
    message_id = hashlib.sha1(f"{to}{subject}{time.time_ns()}".encode()).hexdigest()[:16]
    return {"to": to, "message_id": message_id}


@job("report.generate", queue="low", max_attempts=3, timeout=60)
def generate_report(name: str = "daily", rows: int = 1000) -> dict:
    """Sleeps 2-5 s like a slow query and fails about 30 % of the time."""
    _sleep_cooperatively(random.uniform(2, 5))
    if random.random() < 0.3:
        raise RuntimeError(f"simulated failure while generating report {name!r}")
    return {"report": name, "rows": int(rows)}


@job("image.process", queue="default", max_attempts=2, timeout=120)
def process_image(width: int = 1024, height: int = 768, steps: int = 5) -> dict:
    """A CPU-bound simulation (hashing rounds per step) that logs its progress."""
    ctx = current_job()
    digest = f"{width}x{height}".encode()
    rounds = max(1, int(width) * int(height) // 2000)
    for step in range(1, int(steps) + 1):
        for _ in range(rounds):
            digest = hashlib.sha256(digest).digest()
        if ctx is not None:
            ctx.check_cancelled()
            ctx.progress(f"image.process step {step}/{steps}", step=step)
    return {"width": int(width), "height": int(height), "checksum": digest.hex()[:16]}
