"""``manage.py prunejobs``: delete finished jobs past JOBQUEUE_RETENTION, on demand."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobqueue_site.env import parse_durations
from jobs.models import TERMINAL_STATUSES
from scheduling.pruning import prune


class Command(BaseCommand):
    help = (
        "Delete finished jobs older than their status's retention (JOBQUEUE_RETENTION), in batches. "
        "Failed jobs whose dead letter is still open are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted; delete nothing"
        )
        parser.add_argument(
            "--batch-size", type=int, default=None, help="rows per DELETE (default JOBQUEUE_PRUNE_BATCH)"
        )
        parser.add_argument(
            "--retention",
            default=None,
            help="override JOBQUEUE_RETENTION for this run, e.g. succeeded=1d,failed=14d",
        )

    def handle(self, *args: object, **options: object) -> None:
        batch = options["batch_size"] or settings.JOBQUEUE_PRUNE_BATCH
        if not 1 <= batch <= 100_000:
            raise CommandError(f"--batch-size must be from 1 to 100000, got {batch}")
        retention = settings.JOBQUEUE_RETENTION
        if options["retention"] is not None:
            retention = _parse_retention(str(options["retention"]))
        if not retention:
            self.stdout.write("JOBQUEUE_RETENTION is empty: nothing is pruned")
            return
        report = prune(retention, batch=batch, dry_run=bool(options["dry_run"]))
        self.stdout.write(report.summary())


def _parse_retention(raw: str) -> dict[str, float]:
    try:
        retention = parse_durations(raw, "--retention")
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from None
    unknown = sorted(set(retention) - {str(status) for status in TERMINAL_STATUSES})
    if unknown:
        raise CommandError(f"--retention: only finished statuses can be pruned, not {', '.join(unknown)}")
    return retention
