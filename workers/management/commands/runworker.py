"""``manage.py runworker``: parse and validate options, then hand over to the supervisor.

This app is listed before ``channels`` in INSTALLED_APPS, so this command, not
channels' consumer runner of the same name, is the one Django runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.services import QUEUE_RE
from workers.supervisor import Supervisor
from workers.worker import WorkerConfig


def _positive_int(name: str, minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise CommandError(f"--{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise CommandError(f"--{name} must be at least {minimum}, got {value}")
        return value

    return parse


def _queues(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if not names:
        raise CommandError("--queues needs at least one queue name, e.g. --queues high,default,low")
    for name in names:
        if not QUEUE_RE.match(name):
            raise CommandError(f"invalid queue name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if len(set(names)) != len(names):
        raise CommandError(f"--queues lists a queue twice: {raw!r}")
    return names


class Command(BaseCommand):
    help = "Run jobqueue worker processes that execute jobs from the given queues (in precedence order)."
    requires_system_checks = []  # start fast; `manage.py check` is the place for checks

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues",
            default=None,
            help="comma-separated, highest precedence first (default: JOBQUEUE_QUEUES)",
        )
        parser.add_argument("--processes", default="1", help="worker processes (default 1)")
        parser.add_argument("--threads", default="8", help="handler threads per process (default 8)")
        parser.add_argument(
            "--prefetch", default="16", help="jobs claimed beyond the free threads (default 16)"
        )
        parser.add_argument(
            "--prefetch-max",
            default=None,
            help="most jobs claimed ahead when jobs are short; the window follows the finish rate "
            "(default JOBQUEUE_PREFETCH_MAX, 256; --prefetch 0 or a value <= --prefetch turns it off)",
        )
        parser.add_argument("--burst", action="store_true", help="exit once nothing is ready or running")
        parser.add_argument(
            "--shutdown-grace",
            default=None,
            help="seconds SIGTERM waits for running jobs (default JOBQUEUE_SHUTDOWN_GRACE)",
        )

    # Any, as in BaseCommand.handle: argparse's values (all str here but --burst's bool, or None).
    def handle(self, *args: Any, **options: Any) -> None:
        queues = _queues(options["queues"] or ",".join(settings.JOBQUEUE_QUEUES))
        processes = _positive_int("processes", 1)(options["processes"])
        threads = _positive_int("threads", 1)(options["threads"])
        prefetch = _positive_int("prefetch", 0)(options["prefetch"])
        prefetch_max = None
        if options["prefetch_max"] is not None:
            prefetch_max = _positive_int("prefetch-max", 0)(options["prefetch_max"])
        config = WorkerConfig.from_settings(queues, threads, prefetch, bool(options["burst"]), prefetch_max)
        if options["shutdown_grace"] is not None:
            try:
                grace = float(options["shutdown_grace"])
            except ValueError:
                raise CommandError(
                    f"--shutdown-grace must be a number, got {options['shutdown_grace']!r}"
                ) from None
            if grace < 0:
                raise CommandError("--shutdown-grace must be >= 0")
            config = WorkerConfig(**{**config.__dict__, "shutdown_grace": grace})
        sys.exit(Supervisor(config, processes).run())
