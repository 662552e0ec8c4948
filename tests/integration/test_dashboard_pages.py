"""Dashboard pages as Django renders them: staff only, escaped, actions offered only when legal."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from jobs import registry
from jobs.models import AttemptOutcome, DeadLetter, Job, JobAttempt, JobStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_user("operator", password="pw-123-long", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_job", "change_job", "view_job"]))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client() -> Client:
    """Staff without any model permission: may look, may not retry or cancel."""
    user = get_user_model().objects.create_user("viewer", password="pw-123-long", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def _job(status: str = JobStatus.QUEUED, **fields) -> Job:
    # A fixture row: the services would need Redis; the pages only read PostgreSQL.
    return Job.objects.create(type="test.ok", status=status, **fields)


def _config(response) -> dict:
    html = response.content.decode()
    start = html.index('id="dashboard-config"')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return json.loads(body)


@pytest.mark.parametrize("path", ["/", "/create/", f"/jobs/{uuid.uuid4()}/"])
def test_anonymous_visitors_are_sent_to_the_admin_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_signed_in_users_who_are_not_staff_are_sent_to_the_login(client):
    user = get_user_model().objects.create_user("someone", password="pw-123-long")
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_dashboard_shows_every_status_counter_links_to_the_admin_and_sets_the_csrf_cookie(staff_client):
    response = staff_client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    for status in JobStatus.values:
        assert f'data-counter="{status}"' in html
    assert 'href="/admin/"' in html
    assert "/admin/jobs/job/" in html  # "all jobs in the admin"
    assert 'id="conn"' in html and "jobs/dashboard/overview.js" in html
    assert "csrftoken" in response.cookies
    config = _config(response)
    assert config["page"] == "index" and config["ws"] == "/ws/dashboard/" and config["api"] == "/api/"


def test_filters_and_tab_come_from_the_url(staff_client):
    response = staff_client.get("/?status=failed&queue=high&type=test.ok&tab=dead")
    html = response.content.decode()
    config = _config(response)
    assert config["filters"] == {"status": "failed", "queue": "high", "type": "test.ok"}
    assert config["tab"] == "dead"
    assert '<option value="failed" selected>' in html
    assert '<option value="high" selected>' in html
    assert '<option value="test.ok" selected>' in html
    assert 'id="panel-jobs" role="tabpanel" aria-labelledby="tab-jobs" hidden' in html


def test_the_job_page_shows_fields_payload_result_and_attempts_with_tracebacks(staff_client):
    job = _job(
        JobStatus.FAILED,
        kwargs={"value": "<script>alert(1)</script>"},
        result={"answer": 42},
        attempts=2,
        max_attempts=2,
        error="ValueError: boom",
        finished_at=timezone.now(),
    )
    now = timezone.now()
    for number in (1, 2):
        JobAttempt.objects.create(
            job=job,
            number=number,
            worker="host:1:w",
            started_at=now - timedelta(seconds=2),
            finished_at=now,
            outcome=AttemptOutcome.FAILED,
            error="ValueError: boom",
            traceback=f"Traceback (most recent call last):\n  attempt {number}\nValueError: boom",
        )
    DeadLetter.objects.create(job=job, reason="attempts exhausted", errors=["boom", "boom"], dead_at=now)

    response = staff_client.get(f"/jobs/{job.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert str(job.pk) in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "&quot;answer&quot;: 42" in html
    assert html.count('data-attempt="') == 2 and "attempt 2" in html
    assert "attempts exhausted" in html
    assert f"/admin/jobs/job/{job.pk}/change/" in html


def test_payload_fields_a_type_marks_sensitive_are_redacted(staff_client):
    registry.register(
        registry.JobType(name="test.secretive", func=lambda token="": None, sensitive=("token",))
    )
    try:
        job = Job.objects.create(type="test.secretive", kwargs={"token": "hunter2", "user": "ada"})
        html = staff_client.get(f"/jobs/{job.pk}/").content.decode()
    finally:
        registry.unregister("test.secretive")
    assert "hunter2" not in html
    assert "********" in html and "ada" in html


@pytest.mark.parametrize(
    ("status", "retry", "cancel"),
    [
        (JobStatus.QUEUED, False, True),
        (JobStatus.RUNNING, False, True),
        (JobStatus.FAILED, True, False),
        (JobStatus.CANCELLED, True, False),
        (JobStatus.SUCCEEDED, False, False),
    ],
)
def test_retry_and_cancel_are_offered_only_when_legal(staff_client, status, retry, cancel):
    html = staff_client.get(f"/jobs/{_job(status).pk}/").content.decode()
    assert 'id="btn-retry"' in html and 'id="btn-cancel"' in html  # on the page, shown or hidden
    assert ('id="btn-retry" class="btn" hidden' not in html) is retry
    assert ('id="btn-cancel" class="btn btn-danger" hidden' not in html) is cancel


def test_a_running_job_whose_cancel_was_requested_offers_no_second_cancel(staff_client):
    job = _job(JobStatus.RUNNING, cancel_requested_at=timezone.now())
    html = staff_client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="btn-cancel" class="btn btn-danger" hidden' in html


def test_staff_without_the_change_permission_get_no_action_buttons(viewer_client):
    job = _job(JobStatus.FAILED)
    response = viewer_client.get(f"/jobs/{job.pk}/")
    html = response.content.decode()
    assert 'id="btn-retry" class="btn" hidden' in html
    assert _config(response)["can"] == {"add": False, "change": False}


def test_an_unknown_job_is_a_404(staff_client):
    assert staff_client.get(f"/jobs/{uuid.uuid4()}/").status_code == 404


def test_the_create_page_has_the_form_fields_the_api_takes(staff_client):
    html = staff_client.get("/create/").content.decode()
    for name in ("type", "payload", "queue", "priority", "max_attempts", "run_at"):
        assert f'name="{name}"' in html
        assert f'data-field="{name}"' in html
    assert '<option value="high">' in html
