"""``manage.py runscheduler``: parse options, then hand over to the scheduler loop."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandParser

from scheduling.scheduler import Scheduler, SchedulerConfig


class Command(BaseCommand):
    help = (
        "Fire cron schedules when they are due (one leader among any number of schedulers) and prune "
        "finished jobs past JOBQUEUE_RETENTION. SIGTERM/SIGINT stops it cleanly."
    )
    requires_system_checks = []  # start fast; `manage.py check` is the place for checks

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="fire what is due now and exit (no leader election, no pruning), e.g. from an external cron",
        )

    def handle(self, *args: object, **options: object) -> None:
        sys.exit(Scheduler(SchedulerConfig.from_settings(once=bool(options["once"]))).run())
