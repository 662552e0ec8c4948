"""Delete finished jobs older than their status's retention, in small batches.

The policy lives here (retention per status, batches, logging, stopping between batches); each
batch is ``jobs.services.delete_finished``: one statement in its own short transaction that
never waits on a row someone is using (see ``jobs/services/deletion.py``). A failed job whose dead
letter is still open is never deleted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from jobs import services
from jobs.models import TERMINAL_STATUSES

logger = logging.getLogger("scheduling.pruning")

DEFAULT_BATCH = 5000


@dataclass
class PruneReport:
    """How many jobs each status lost, and how long it took."""

    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def summary(self) -> str:
        counts = " ".join(f"{status}={count}" for status, count in sorted(self.deleted.items())) or "nothing"
        verb = "would delete" if self.dry_run else "deleted"
        return f"pruning {verb} {self.total} job(s): {counts} ({self.batches} batch(es), {self.seconds:.2f}s)"


def prune(
    retention: dict[str, float | timedelta],
    *,
    batch: int = DEFAULT_BATCH,
    now: datetime | None = None,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> PruneReport:
    """Delete finished jobs older than ``retention[status]`` (seconds or a timedelta), logging the counts.

    ``stop`` ends the run between batches (the scheduler sets it on shutdown).
    """
    started = time.monotonic()
    now = now or timezone.now()
    report = PruneReport(dry_run=dry_run)
    for status, age in retention.items():
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"only finished jobs can be pruned, not {status!r}")
        cutoff = now - (age if isinstance(age, timedelta) else timedelta(seconds=age))
        if dry_run:
            report.deleted[status] = services.count_finished(status, cutoff)
            continue
        deleted = 0
        while not (stop and stop.is_set()):
            count = services.delete_finished(status, cutoff, batch)
            report.batches += 1
            deleted += count
            if count < batch:
                break
        report.deleted[status] = deleted
    report.seconds = time.monotonic() - started
    logger.info(report.summary())
    return report
