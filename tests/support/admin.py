"""Helpers shared by the admin tests (``tests/integration/test_admin_*.py`` and the process tests that
look at the admin while real workers run); this module holds no tests.

Jobs reach their states through the engine itself (``jobs.services``: enqueue, the worker's claim and
finish via ``settle``, cancel), never by writing rows.
"""

from __future__ import annotations

import re
from functools import partial

from django.contrib.messages import get_messages
from django.urls import reverse

from jobs import services
from jobs.models import AttemptOutcome, Job, JobStatus
from tests.support.helpers import claim_as
from workers.broker import Broker

WORKER = "admin-test-host:4242:abcd"
TRACEBACK = 'Traceback (most recent call last):\n  File "handler.py", line 1\nValueError: boom'
LONG_BACKOFF = {"base": 3600, "max": 3600, "jitter": 0}  # a retrying job stays delayed during the test
WORKERS = "admin:workers_worker_changelist"


# --------------------------------------------------------------------------- jobs in every state


_claim = partial(claim_as, WORKER)


def make_job(broker: Broker, status: str, job_type: str = "test.ok", **options: object) -> Job:
    """A job in ``status``, driven there through jobs.services (enqueue, settle, cancel)."""
    if status == JobStatus.SCHEDULED:
        return Job.objects.get(pk=services.enqueue(job_type, delay=3600, **options).pk)
    if status == JobStatus.RETRYING:
        options.setdefault("backoff", LONG_BACKOFF)
    job = services.enqueue(job_type, **options)
    if status == JobStatus.CANCELLED:
        services.cancel(job.pk)
    elif status != JobStatus.QUEUED:
        claimed = _claim(broker, job)
        outcome = {
            JobStatus.RUNNING: None,
            JobStatus.SUCCEEDED: lambda: services.succeeded(claimed, "done"),
            JobStatus.FAILED: lambda: services.after_failure(
                claimed, AttemptOutcome.FAILED, "ValueError: boom", TRACEBACK, permanent=True
            ),
            JobStatus.RETRYING: lambda: services.after_failure(
                claimed, AttemptOutcome.FAILED, "ValueError: flaky", TRACEBACK
            ),
        }[status]
        if outcome is not None:
            services.settle(broker, [outcome()], [], WORKER)
    job = Job.objects.get(pk=job.pk)
    assert job.status == status
    return job


def fail_twice(broker: Broker, job_type: str = "test.ok", **options: object) -> Job:
    """A dead letter with two attempts: fail, run now, fail for good."""
    job = make_job(broker, JobStatus.RETRYING, job_type, max_attempts=2, **options)
    services.run_now(job.pk)
    claimed = _claim(broker, job)
    final = services.after_failure(claimed, AttemptOutcome.FAILED, "ValueError: second failure", TRACEBACK)
    services.settle(broker, [final], [], WORKER)
    job = Job.objects.get(pk=job.pk)
    assert job.status == JobStatus.FAILED and job.attempts == 2
    return job


def status_of(job: Job) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def action_url(job: Job, name: str) -> str:
    return reverse(f"admin:jobs_job_{name.replace('-', '_')}", args=[job.pk])


def change_url(job: Job) -> str:
    return reverse("admin:jobs_job_change", args=[job.pk])


def buttons_on(html: str) -> list[str]:
    return re.findall(r'<li class="jq-action"><form method="post" action="[^"]+/([a-z-]+)/">', html)


# --------------------------------------------------------------------------- the workers page


def rows(html: str) -> list[str]:
    return re.findall(r'<tr class="worker-row".*?</tr>', html, flags=re.S)
