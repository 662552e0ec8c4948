"""The admin while real workers run: a running job's Cancel button, a live worker on the Workers page."""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse

from jobs import services
from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from tests.support.admin import WORKERS, action_url, buttons_on, change_url, messages_of, rows, status_of
from tests.support.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_cancel_button_on_a_running_job_shows_cancel_requested_until_the_worker_stops_it(
    admin_client, broker, start_worker
):
    # A cancel reaches the worker at once, but this handler looks at it only every 5 s: seconds after
    # this test has looked at the page, never before (the kill grace is longer, so it is not replaced).
    job = services.enqueue("test.sleep", kwargs={"seconds": 60, "step": 5})
    worker = start_worker(
        "--queues", "default", "--threads", "2", "--processes", "1", env={"JOBQUEUE_KILL_GRACE": "30"}
    )
    wait_until(lambda: status_of(job) == JobStatus.RUNNING, timeout=60, what=f"job running\n{worker.log()}")

    response = admin_client.post(action_url(job, "cancel"))

    assert messages_of(response) == [
        f"Job {str(job.pk)[:8]}: cancel requested; it shows cancel requested until its worker stops it."
    ]
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.cancel_requested_at is not None
    html = admin_client.get(change_url(job)).content.decode()
    assert '<span class="jq-badge jq-cancel-requested">cancel requested</span>' in html
    assert buttons_on(html) == []  # asked once; nothing more to offer
    wait_until(lambda: status_of(job) == JobStatus.CANCELLED, timeout=60, what=f"cancelled\n{worker.log()}")
    html = admin_client.get(change_url(job)).content.decode()
    assert '<span class="jq-badge jq-cancelled">cancelled</span>' in html
    assert JobAttempt.objects.get(job=job).outcome == AttemptOutcome.CANCELLED
    assert buttons_on(html) == ["retry"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_workers_page_shows_a_real_worker_and_links_its_running_job(admin_client, broker, start_worker):
    job = services.enqueue("test.sleep", kwargs={"seconds": 60})
    worker = start_worker("--queues", "default,low", "--threads", "3", "--processes", "1")
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists(),
        timeout=60,
        what=f"job running\n{worker.log()}",
    )
    link = f'href="{reverse("admin:jobs_job_change", args=[job.pk])}"'

    def page_with_the_job() -> str | None:
        page = admin_client.get(reverse(WORKERS)).content.decode()
        return page if link in page else None

    html = wait_until(page_with_the_job, timeout=30, what="the job in the worker's heartbeat")

    (row,) = rows(html)
    assert socket.gethostname() in row
    assert any(f">{pid}<" in row for pid in worker.children())  # the worker process, not the supervisor
    assert "default, low" in row and ">3<" in row
    assert '<span class="jq-badge jq-alive">alive</span>' in row
