"""The operator audit trail (``jobs.audit``): every action an operator takes through the admin, the API
or the dashboard leaves a Django admin ``LogEntry`` (user, time, object, what changed), shown on the
object's History page and on the job's admin page; a refused action leaves none.

Jobs reach their states through ``jobs.services``; every assertion reads PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import AnonymousUser, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from jobs import audit
from jobs.models import DeadLetter, Job, JobStatus
from scheduling.models import Schedule
from tests.support.admin import action_url, change_url, make_job, status_of
from tests.support.api import DEAD_LETTERS_URL, JOBS_URL, client_for, dead_job, make_user, running_job

pytestmark = pytest.mark.django_db(transaction=True)

JOB_CHANGELIST = "admin:jobs_job_changelist"
SCHEDULES_URL = "/api/schedules/"
NOW = datetime(2025, 6, 2, 6, 0, tzinfo=UTC)


def trail(obj: models.Model) -> list[tuple[str, int, str]]:
    """(username, action flag, message) of every LogEntry on ``obj``, oldest first."""
    content_type = ContentType.objects.get_for_model(obj)
    entries = LogEntry.objects.filter(content_type=content_type, object_id=str(obj.pk)).order_by("id")
    return [(entry.user.get_username(), entry.action_flag, entry.change_message) for entry in entries]


def api_operator(username: str = "operator") -> tuple[APIClient, str]:
    user = make_user(
        username, "change_job", "view_job", "change_deadletter", "delete_deadletter", "view_deadletter"
    )
    return client_for(user), username


def schedule_editor(django_user_model, username: str = "planner") -> APIClient:
    user = django_user_model.objects.create_user(username=username, password=None)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="scheduling",
            codename__in=["add_schedule", "change_schedule", "delete_schedule", "view_schedule"],
        )
    )
    client = APIClient()
    client.force_authenticate(user)
    return client


def make_schedule(name: str = "nightly") -> Schedule:
    with time_machine.travel(NOW, tick=False):
        return Schedule.objects.create(name=name, type="test.ok", kwargs={"value": 1}, cron="0 3 * * *")


# --------------------------------------------------------------------------- the admin


def test_the_admin_retry_button_records_who_retried_the_job_and_how_its_status_moved(admin_client, broker):
    job = make_job(broker, JobStatus.FAILED)

    admin_client.post(action_url(job, "retry"))

    assert status_of(job) == JobStatus.QUEUED
    assert trail(job) == [("admin", CHANGE, "Retry (admin): failed → queued")]


def test_a_refused_admin_button_records_nothing(admin_client, broker):
    job = make_job(broker, JobStatus.SUCCEEDED)

    admin_client.post(action_url(job, "retry"))

    assert status_of(job) == JobStatus.SUCCEEDED
    assert trail(job) == []


def test_a_bulk_cancel_records_one_entry_per_changed_job_in_one_insert_and_none_for_skipped_ones(
    admin_client, broker
):
    running = make_job(broker, JobStatus.RUNNING)
    succeeded = make_job(broker, JobStatus.SUCCEEDED)
    queued = [make_job(broker, JobStatus.QUEUED) for _ in range(4)]  # last: claims pop the oldest
    selected = [*queued, running, succeeded]

    with CaptureQueriesContext(connection) as queries:
        admin_client.post(
            reverse(JOB_CHANGELIST),
            {"action": "cancel_jobs", "_selected_action": [str(j.pk) for j in selected], "index": 0},
        )

    for job in queued:
        assert trail(job) == [("admin", CHANGE, "Cancel (admin): queued → cancelled")]
    assert trail(running) == [("admin", CHANGE, "Cancel (admin): running → cancel requested")]
    assert trail(succeeded) == []
    inserts = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "django_admin_log"')
    ]
    assert len(inserts) == 1


def test_the_admin_run_now_action_records_the_job_made_due(admin_client, broker):
    job = make_job(broker, JobStatus.SCHEDULED)

    admin_client.post(
        reverse(JOB_CHANGELIST), {"action": "run_jobs_now", "_selected_action": [str(job.pk)], "index": 0}
    )

    assert trail(job) == [("admin", CHANGE, "Run now (admin): scheduled → queued")]


def test_admin_dead_letter_retry_records_the_dead_letter_and_its_job_and_discard_the_dead_letter(
    admin_client, broker
):
    retried_job, discarded_job = dead_job(broker), dead_job(broker)
    retried = DeadLetter.objects.get(job=retried_job)
    discarded = DeadLetter.objects.get(job=discarded_job)

    admin_client.post(reverse("admin:jobs_deadletter_retry", args=[retried.pk]))
    admin_client.post(reverse("admin:jobs_deadletter_discard", args=[discarded.pk]))

    assert trail(retried) == [("admin", CHANGE, "Retry (admin): open → retried")]
    assert trail(retried_job) == [("admin", CHANGE, "Retry (admin): failed → queued (dead letter retried)")]
    assert trail(discarded) == [("admin", CHANGE, "Discard (admin): open → discarded")]
    assert trail(discarded_job) == []


def test_a_job_admin_page_lists_recent_operator_actions_and_links_its_history_page(admin_client, broker):
    job = make_job(broker, JobStatus.FAILED)
    client, _ = api_operator("carol")
    client.post(f"{JOBS_URL}{job.pk}/retry/")
    admin_client.post(action_url(job, "cancel"))
    history_url = reverse("admin:jobs_job_history", args=[job.pk])

    page = admin_client.get(change_url(job)).content.decode()
    history = admin_client.get(history_url)

    recent = page[page.index("Recent operator actions") :]
    assert f'href="{history_url}"' in page
    assert "Cancel (admin): queued → cancelled" in recent and "Retry (api): failed → queued" in recent
    assert recent.index("Cancel (admin)") < recent.index("Retry (api)")  # newest first
    assert "carol" in recent
    assert history.status_code == 200
    assert "Retry (api): failed → queued" in history.content.decode()


def test_a_job_admin_page_without_actions_says_so(admin_client, broker):
    page = admin_client.get(change_url(make_job(broker, JobStatus.QUEUED))).content.decode()
    assert "Recent operator actions" in page and "None yet." in page


# --------------------------------------------------------------------------- the API and the dashboard


def test_api_retry_and_cancel_record_the_token_user_via_api(broker):
    client, username = api_operator()
    failed, running = make_job(broker, JobStatus.FAILED), running_job(broker)

    assert client.post(f"{JOBS_URL}{failed.pk}/retry/").status_code == 200
    assert client.post(f"{JOBS_URL}{running.pk}/cancel/").status_code == 202

    assert trail(failed) == [(username, CHANGE, "Retry (api): failed → queued")]
    assert trail(running) == [(username, CHANGE, "Cancel (api): running → cancel requested")]


def test_a_refused_api_action_records_nothing(broker):
    client, _ = api_operator()
    job = make_job(broker, JobStatus.SUCCEEDED)

    assert client.post(f"{JOBS_URL}{job.pk}/retry/").status_code == 409
    assert client.post(f"{JOBS_URL}{job.pk}/cancel/").status_code == 409

    assert trail(job) == []


def test_actions_sent_by_the_dashboard_pages_are_recorded_via_dashboard(broker):
    client, username = api_operator()
    job = make_job(broker, JobStatus.QUEUED)

    response = client.post(f"{JOBS_URL}{job.pk}/cancel/", HTTP_X_JOBQUEUE_CLIENT="dashboard")

    assert response.status_code == 200
    assert trail(job) == [(username, CHANGE, "Cancel (dashboard): queued → cancelled")]


def test_the_dashboard_script_sends_the_header_the_audit_trail_reads():
    script = (Path(__file__).parents[2] / "jobs/static/jobs/dashboard/api.js").read_text()
    assert f'headers["{audit.CLIENT_HEADER}"] = "dashboard"' in script


def test_the_job_detail_api_lists_recent_operator_actions_to_operators_only(broker):
    client, username = api_operator()
    viewer = client_for(make_user("viewer", "view_job"))
    job = make_job(broker, JobStatus.FAILED)
    client.post(f"{JOBS_URL}{job.pk}/retry/", HTTP_X_JOBQUEUE_CLIENT="dashboard")
    client.post(f"{JOBS_URL}{job.pk}/cancel/")

    actions = client.get(f"{JOBS_URL}{job.pk}/").json()["operator_actions"]

    assert [(a["user"], a["action"]) for a in actions] == [
        (username, "Cancel (api): queued → cancelled"),
        (username, "Retry (dashboard): failed → queued"),
    ]
    assert all(a["time"] for a in actions)
    assert viewer.get(f"{JOBS_URL}{job.pk}/").json()["operator_actions"] is None


def test_the_dashboard_job_page_has_the_operator_actions_section_its_script_fills():
    template = (Path(__file__).parents[2] / "templates/dashboard/job.html").read_text()
    script = (Path(__file__).parents[2] / "jobs/static/jobs/dashboard/job.js").read_text()
    for element in ("operator-actions", "operator-action-rows", "operator-actions-empty"):
        assert f'id="{element}"' in template and f'getElementById("{element}")' in script


def test_api_dead_letter_retry_and_discard_are_recorded(broker):
    client, username = api_operator()
    retried_job, discarded_job = dead_job(broker), dead_job(broker)
    retried = DeadLetter.objects.get(job=retried_job)
    discarded = DeadLetter.objects.get(job=discarded_job)

    assert client.post(f"{DEAD_LETTERS_URL}{retried.pk}/retry/").status_code == 200
    assert client.delete(f"{DEAD_LETTERS_URL}{discarded.pk}/").status_code == 204
    assert client.delete(f"{DEAD_LETTERS_URL}{discarded.pk}/").status_code == 409  # refused: no entry

    assert trail(retried) == [(username, CHANGE, "Retry (api): open → retried")]
    assert trail(retried_job) == [(username, CHANGE, "Retry (api): failed → queued (dead letter retried)")]
    assert trail(discarded) == [(username, CHANGE, "Discard (api): open → discarded")]


# --------------------------------------------------------------------------- schedules


def test_api_schedule_create_edit_pause_resume_run_and_delete_are_recorded(django_user_model, broker):
    client = schedule_editor(django_user_model)
    with time_machine.travel(NOW, tick=False):
        created = client.post(
            SCHEDULES_URL,
            {"name": "nightly", "type": "test.ok", "payload": {"value": 1}, "cron": "0 3 * * *"},
            format="json",
        )
        assert created.status_code == 201, created.json()
        url = f"{SCHEDULES_URL}{created.json()['id']}/"
        schedule = Schedule.objects.get()
        assert (
            client.patch(url, {"cron": "0 4 * * *", "payload": {"value": 2}}, format="json").status_code
            == 200
        )
        assert client.post(f"{url}pause/").status_code == 200
        assert client.post(f"{url}resume/").status_code == 200
        assert client.post(f"{url}run/").status_code == 201
    job = Job.objects.get()

    assert trail(schedule) == [
        ("planner", ADDITION, "Create (api): test.ok at '0 3 * * *'"),
        ("planner", CHANGE, "Edit (api): changed payload, cron"),
        ("planner", CHANGE, "Pause (api): enabled → paused"),
        ("planner", CHANGE, "Resume (api): paused → enabled"),
        ("planner", CHANGE, f"Run now (api): enqueued job {job.pk}"),
    ]

    assert client.delete(url).status_code == 204
    assert not Schedule.objects.exists()
    assert trail(schedule)[-1] == ("planner", DELETION, "Delete (api): deleted")


def test_refused_or_empty_schedule_changes_record_nothing(django_user_model):
    client = schedule_editor(django_user_model)
    schedule = make_schedule()
    url = f"{SCHEDULES_URL}{schedule.pk}/"

    assert client.patch(url, {"cron": "not a cron"}, format="json").status_code == 400
    assert client.patch(url, {"cron": schedule.cron}, format="json").status_code == 200  # nothing changed
    assert client.post(f"{url}resume/").status_code == 200  # already enabled

    assert trail(schedule) == []


def test_admin_schedule_buttons_are_recorded_and_the_form_save_is_logged_once(admin_client: Client, broker):
    schedule = make_schedule()
    with time_machine.travel(NOW, tick=False):
        admin_client.post(reverse("admin:scheduling_schedule_disable", args=[schedule.pk]))
        admin_client.post(reverse("admin:scheduling_schedule_enable", args=[schedule.pk]))
        admin_client.post(reverse("admin:scheduling_schedule_run", args=[schedule.pk]))
        admin_client.post(  # already enabled: nothing changes, nothing recorded
            reverse("admin:scheduling_schedule_changelist"),
            {"action": "enable_schedules", "_selected_action": [schedule.pk]},
        )
    job = Job.objects.get()

    assert trail(schedule) == [
        ("admin", CHANGE, "Disable (admin): enabled → disabled"),
        ("admin", CHANGE, "Enable (admin): disabled → enabled"),
        ("admin", CHANGE, f"Run now (admin): enqueued job {job.pk}"),
    ]
    history = admin_client.get(reverse("admin:scheduling_schedule_history", args=[schedule.pk]))
    assert "Disable (admin): enabled → disabled" in history.content.decode()

    edited = admin_client.post(
        reverse("admin:scheduling_schedule_change", args=[schedule.pk]),
        {
            "name": "nightly",
            "enabled": "on",
            "type": "test.ok",
            "kwargs": '{"value": 1}',
            "args": "[]",
            "queue": "",
            "priority": "",
            "max_attempts": "",
            "cron": "0 4 * * *",
            "timezone": schedule.timezone,
            "misfire_policy": schedule.misfire_policy,
            "catch_up_limit": str(schedule.catch_up_limit),
        },
    )
    assert edited.status_code == 302
    # The admin logs its own form saves ("Changed … Cron …"): one entry, not doubled by jobs.audit.
    assert len(trail(schedule)) == 4
    saved = LogEntry.objects.order_by("id").last()
    assert (saved.user.get_username(), saved.action_flag) == ("admin", CHANGE)
    assert "Cron" in saved.get_change_message()


def test_the_recorder_writes_nothing_for_an_anonymous_user_and_refuses_an_unknown_surface(broker):
    job = make_job(broker, JobStatus.QUEUED)

    assert audit.record(AnonymousUser(), "Retry", "api", [job]) == []
    with pytest.raises(ValueError, match="unknown surface"):
        audit.record(AnonymousUser(), "Retry", "cli", [job])
    assert trail(job) == []
