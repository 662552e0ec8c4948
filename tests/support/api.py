"""Helpers shared by the API tests (``tests/integration/test_api_*.py`` and the process tests that
scrape the API); this module holds no tests.

Users get exactly the permissions a test names and authenticate with real DRF tokens. Jobs reach
their states through ``jobs.services`` (enqueue, the worker's claim and finish via ``settle``,
cancel), the way the engine moves them, never by writing status columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs import services
from jobs.models import AttemptOutcome, DeadLetter, Job, JobStatus
from tests.support.helpers import claim_as
from workers.broker import Broker

WORKER = "api-test-host:4242:abcd"
JOBS_URL = "/api/jobs/"
DEAD_LETTERS_URL = "/api/dead-letters/"


def make_user(username: str = "alice", *codenames: str, staff: bool = False) -> Any:
    """A user holding exactly ``codenames`` (``app_label.codename`` or a jobs codename)."""
    # No password: hashing one costs a second of PBKDF2 per user, and tokens or force_login need none.
    user = get_user_model().objects.create_user(username=username, password=None, is_staff=staff)
    for name in codenames:
        app_label, _, codename = name.rpartition(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label or "jobs", codename=codename)
        )
    return user


def client_for(user: Any = None, *, keyword: str = "Token") -> APIClient:
    """An API client sending the user's token (``Token`` or ``Bearer``), or anonymous."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"{keyword} {token.key}")
    return client


def operator(username: str = "operator") -> APIClient:
    """A client allowed every read and write of the jobs API."""
    return client_for(
        make_user(
            username,
            "add_job",
            "change_job",
            "view_job",
            "change_deadletter",
            "delete_deadletter",
            "view_deadletter",
        )
    )


claim = partial(claim_as, WORKER)


def running_job(broker: Broker, job_type: str = "test.ok", **options: Any) -> Job:
    job = services.enqueue(job_type, **options)
    claim(broker, job)
    return Job.objects.get(pk=job.pk)


def succeeded_job(broker: Broker, job_type: str = "test.ok", **options: Any) -> Job:
    claimed = claim(broker, services.enqueue(job_type, **options))
    services.settle(broker, [services.succeeded(claimed, {"ok": True})], [], WORKER)
    return Job.objects.get(pk=claimed.id)


def dead_job(
    broker: Broker, job_type: str = "test.ok", error: str = "ValueError: boom", **options: Any
) -> Job:
    """A failed job with an open dead letter (a permanent failure on its first attempt)."""
    claimed = claim(broker, services.enqueue(job_type, **options))
    outcome = services.after_failure(claimed, AttemptOutcome.FAILED, error, "Traceback: …", permanent=True)
    services.settle(broker, [outcome], [], WORKER)
    job = Job.objects.get(pk=claimed.id)
    assert job.status == JobStatus.FAILED and DeadLetter.objects.filter(job=job).exists()
    return job


@contextmanager
def postgres_unreachable(empty_dir: Path) -> Iterator[None]:
    """PostgreSQL "down" for this thread: the connection is closed and pointed at a directory with no
    server socket, so every query fails to connect (an OperationalError), as during an outage."""
    original = connection.settings_dict["HOST"]
    connection.close()
    connection.settings_dict["HOST"] = str(empty_dir)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["HOST"] = original


def retrying_job(broker: Broker, queue: str = "low") -> Job:
    """A job whose first attempt failed and that waits for its retry (in its own queue, out of the way)."""
    claimed = claim(broker, services.enqueue("test.fail", queue=queue))
    services.settle(
        broker, [services.after_failure(claimed, AttemptOutcome.FAILED, "ValueError: flaky")], [], WORKER
    )
    job = Job.objects.get(pk=claimed.id)
    assert job.status == JobStatus.RETRYING
    return job


SAMPLE_RE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})?'
    r" (?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|Inf|NaN))$"
)
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


def parse_exposition(text: str) -> dict[str, float]:
    """Check every line of a text exposition (format 0.0.4) and return {"name{labels}": value}.

    Labels are keyed in name order: their order means nothing to a scraper (prometheus_client writes
    them sorted).
    """
    samples: dict[str, float] = {}
    declared: set[str] = set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            assert len(parts) == 4, line
            if parts[1] == "TYPE":
                assert parts[3] in {"counter", "gauge", "histogram"}, line
                declared.add(parts[2])
            continue
        match = SAMPLE_RE.match(line)
        assert match, f"not a valid sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in declared or family in declared, f"{name} has no # TYPE"
        pairs = LABEL_RE.findall(match["labels"] or "")
        labels = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs)) + "}" if pairs else ""
        samples[name + labels] = float(match["value"])
    return samples
