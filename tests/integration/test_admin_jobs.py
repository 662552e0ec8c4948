"""The jobs admin through the Django test client: list, filters, search, detail, actions and buttons.

Jobs reach their states through the engine itself (``jobs.services``: enqueue, the
worker's claim and finish via ``settle``, cancel), never by writing rows, and
every assertion on a change reads PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import dispatch, registry, services
from jobs.admin.pagination import EstimatedCountPaginator
from jobs.models import DeadLetter, Job, JobAttempt, JobStatus
from jobs.redaction import REDACTED
from tests.support.admin import WORKER, action_url, buttons_on, change_url, make_job, messages_of, status_of

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:jobs_job_changelist"


def run_action(client: Client, action: str, jobs: list[Job]):
    return client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [str(j.pk) for j in jobs], "index": 0}
    )


@pytest.fixture
def staff_user(django_user_model):
    """A staff user holding exactly the permissions given."""

    def make(*codenames: str, username: str = "operator"):
        user = django_user_model.objects.create_user(username=username, password="pw-123456", is_staff=True)
        perms = Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames)
        user.user_permissions.add(*perms)
        return user

    return make


@pytest.fixture
def secret_type() -> Iterator[str]:
    """A temporary job type whose ``password`` kwarg is sensitive."""
    name = "test.admin_secret"

    def login(user: str = "", password: str = "") -> None:
        return None

    registry.job(name, sensitive=("password",))(login)
    yield name
    registry.unregister(name)


# --------------------------------------------------------------------------- list


def test_changelist_shows_short_id_type_queue_badge_attempts_and_worker(admin_client, broker):
    failed = make_job(broker, JobStatus.FAILED, queue="low", priority=7)
    queued = make_job(broker, JobStatus.QUEUED, "email.send", kwargs={"to": "a@example.com"})

    response = admin_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    html = response.content.decode()
    assert str(failed.pk)[:8] in html and str(queued.pk)[:8] in html
    assert '<span class="jq-badge jq-failed">failed</span>' in html
    assert '<span class="jq-badge jq-queued">queued</span>' in html
    assert "1/3" in html and "0/3" in html
    assert WORKER in html
    assert "a@example.com" not in html  # payloads are not part of the list


def test_changelist_never_counts_the_whole_table_nor_selects_distinct_filter_values(admin_client, broker):
    for _ in range(3):
        make_job(broker, JobStatus.QUEUED, queue="low")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse(CHANGELIST), {"status__exact": "queued"})

    assert response.status_code == 200
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not [s for s in sql if "COUNT(" in s and "LIMIT" not in s], sql
    assert not [s for s in sql if "DISTINCT" in s], sql
    # The filter choices come from the registry and settings, not from the rows.
    html = response.content.decode()
    assert "type=email.send" in html and "queue=high" in html


def test_changelist_query_count_does_not_grow_with_the_rows_shown(admin_client, broker):
    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(reverse(CHANGELIST)).status_code == 200
        return len(queries)

    make_job(broker, JobStatus.FAILED)
    few = queries_for_page()
    services.enqueue_many([{"type": "noop"} for _ in range(25)])
    make_job(broker, JobStatus.SCHEDULED)

    assert queries_for_page() == few


def test_a_large_table_shows_an_estimated_count_without_count_star(admin_client, broker, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 3)
    services.enqueue_many([{"type": "noop"} for _ in range(8)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert "about 8 jobs" in response.content.decode()
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]

    filtered = admin_client.get(reverse(CHANGELIST), {"type": "noop"})
    assert re.search(r"about \d+ results", filtered.content.decode())


def test_an_estimated_count_offers_no_links_to_the_last_pages(broker, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 3)
    services.enqueue_many([{"type": "noop"} for _ in range(30)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")

    paginator = EstimatedCountPaginator(Job.objects.filter(type="noop").order_by("-seq"), 2)

    assert paginator.num_pages == 15 and paginator.count_is_estimate
    assert list(paginator.get_elided_page_range(1)) == [1, 2, 3, 4, paginator.ELLIPSIS]
    assert list(paginator.get_elided_page_range(9)) == [1, 2, "…", 6, 7, 8, 9, 10, 11, 12, "…"]


def test_filters_by_status_queue_type_and_created_date(admin_client, broker):
    failed = make_job(broker, JobStatus.FAILED, queue="low")
    scheduled = make_job(broker, JobStatus.SCHEDULED, "email.send", kwargs={"to": "x@example.com"})
    queued = make_job(broker, JobStatus.QUEUED, queue="high")

    everything = {str(j.pk)[:8] for j in (failed, scheduled, queued)}

    def shown(params: dict) -> set[str]:
        response = admin_client.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
        return {short for short in everything if short in response.content.decode()}

    assert shown({"status__exact": "failed"}) == {str(failed.pk)[:8]}
    assert shown({"queue": "high"}) == {str(queued.pk)[:8]}
    assert shown({"type": "email.send"}) == {str(scheduled.pk)[:8]}
    since = failed.created_at - timedelta(minutes=5)
    assert shown({"created_at__gte": since.isoformat()}) == everything
    assert shown({"created_at__lt": "2000-01-01T00:00:00+00:00"}) == set()


def test_search_finds_jobs_by_id_prefix_type_and_idempotency_key(admin_client, broker):
    keyed = services.enqueue("noop", idempotency_key="order-1234")
    mail = services.enqueue("email.send", kwargs={"to": "x@example.com"})
    other = services.enqueue("noop")

    def found(term: str) -> set:
        response = admin_client.get(reverse(CHANGELIST), {"q": term})
        assert response.status_code == 200
        return {j.pk for j in (keyed, mail, other) if str(j.pk)[:8] in response.content.decode()}

    assert found(str(other.pk)[:8]) == {other.pk}
    assert found(str(other.pk)) == {other.pk}
    assert found("order-1234") == {keyed.pk}
    assert found("email") == {mail.pk}  # part of a registered type name
    assert found("email.send") == {mail.pk}
    assert found("nothing-like-this") == set()


# --------------------------------------------------------------------------- detail


def test_detail_page_shows_attempts_with_collapsible_traceback_and_is_read_only(admin_client, broker):
    job = make_job(broker, JobStatus.FAILED)

    response = admin_client.get(change_url(job))

    assert response.status_code == 200
    html = response.content.decode()
    assert '<span class="jq-badge jq-failed">failed</span>' in html
    assert "<details><summary>traceback</summary>" in html and "ValueError: boom" in html
    assert WORKER in html
    assert 'name="_save"' not in html  # no Save button: nothing is edited here
    assert buttons_on(html) == ["retry"]
    assert f'href="/jobs/{job.pk}/"' in html  # the live view on the dashboard


def test_detail_buttons_match_the_jobs_status(admin_client, broker):
    succeeded = make_job(broker, JobStatus.SUCCEEDED)
    running = make_job(broker, JobStatus.RUNNING)
    retrying = make_job(broker, JobStatus.RETRYING)
    scheduled = make_job(broker, JobStatus.SCHEDULED)
    cancelled = make_job(broker, JobStatus.CANCELLED)
    queued = make_job(broker, JobStatus.QUEUED)

    def buttons(job: Job) -> list[str]:
        return buttons_on(admin_client.get(change_url(job)).content.decode())

    assert buttons(succeeded) == []
    assert buttons(running) == ["cancel"]
    assert buttons(retrying) == ["cancel", "run-now"]
    assert buttons(scheduled) == ["cancel", "run-now"]
    assert buttons(cancelled) == ["retry"]
    assert buttons(queued) == ["cancel"]


def test_sensitive_kwargs_are_redacted_on_the_detail_page(admin_client, broker, secret_type):
    job = services.enqueue(secret_type, kwargs={"user": "ada", "password": "hunter2"})

    html = admin_client.get(change_url(job)).content.decode()

    assert "hunter2" not in html
    assert REDACTED in html and "ada" in html
    assert "hunter2" not in admin_client.get(reverse(CHANGELIST)).content.decode()


# --------------------------------------------------------------------------- actions on the selection


def test_retry_action_reports_changed_and_skipped_jobs(admin_client, broker):
    failed = [make_job(broker, JobStatus.FAILED) for _ in range(2)]
    cancelled = make_job(broker, JobStatus.CANCELLED)
    succeeded = [make_job(broker, JobStatus.SUCCEEDED) for _ in range(2)]

    response = run_action(admin_client, "retry_jobs", [*failed, cancelled, *succeeded])

    assert response.status_code == 302
    assert messages_of(response) == ["3 retried; 2 skipped: already succeeded"]
    assert {status_of(j) for j in [*failed, cancelled]} == {JobStatus.QUEUED}
    assert {status_of(j) for j in succeeded} == {JobStatus.SUCCEEDED}
    # History is kept: the failed attempts stay, the dead letters are marked retried.
    assert JobAttempt.objects.filter(job__in=failed).count() == 2
    assert set(DeadLetter.objects.filter(job__in=failed).values_list("resolution", flat=True)) == {"retried"}
    assert LogEntry.objects.filter(change_message__startswith="Retry (admin)").count() == 3


def test_retry_action_groups_several_skip_reasons(admin_client, broker):
    failed = make_job(broker, JobStatus.FAILED)
    succeeded = make_job(broker, JobStatus.SUCCEEDED)
    running = [make_job(broker, JobStatus.RUNNING) for _ in range(2)]

    response = run_action(admin_client, "retry_jobs", [failed, succeeded, *running])

    assert messages_of(response) == ["1 retried; 3 skipped: 2 still running, 1 already succeeded"]
    assert [status_of(j) for j in running] == [JobStatus.RUNNING, JobStatus.RUNNING]


def test_cancel_action_cancels_waiting_jobs_and_requests_cancel_of_running_ones(admin_client, broker):
    running = make_job(broker, JobStatus.RUNNING)
    retrying = make_job(broker, JobStatus.RETRYING)
    scheduled = make_job(broker, JobStatus.SCHEDULED)
    succeeded = make_job(broker, JobStatus.SUCCEEDED)
    queued = make_job(broker, JobStatus.QUEUED)

    response = run_action(admin_client, "cancel_jobs", [running, retrying, scheduled, succeeded, queued])

    assert messages_of(response) == [
        "3 cancelled; cancel requested for 1 running job (its worker stops it); 1 skipped: already succeeded"
    ]
    assert {status_of(j) for j in (retrying, scheduled, queued)} == {JobStatus.CANCELLED}
    running.refresh_from_db()
    assert running.status == JobStatus.RUNNING and running.cancel_requested_at is not None
    dispatch.flush()
    assert broker.location(str(queued.pk), queued.queue) is None  # gone from the dispatch index too
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert '<span class="jq-badge jq-cancel-requested">cancel requested</span>' in html


def test_run_now_action_queues_scheduled_and_retrying_jobs(admin_client, broker):
    scheduled = make_job(broker, JobStatus.SCHEDULED)
    retrying = make_job(broker, JobStatus.RETRYING)
    queued = make_job(broker, JobStatus.QUEUED)

    response = run_action(admin_client, "run_jobs_now", [scheduled, retrying, queued])

    assert messages_of(response) == ["2 queued to run now; 1 skipped: already queued"]
    assert {status_of(j) for j in (scheduled, retrying, queued)} == {JobStatus.QUEUED}
    dispatch.flush()
    assert broker.location(str(scheduled.pk), scheduled.queue) == "ready"


def test_an_oversized_selection_is_refused_and_changes_nothing(admin_client, broker, monkeypatch):
    monkeypatch.setattr("jobs.admin.actions.MAX_ACTION_OBJECTS", 2)
    jobs = [make_job(broker, JobStatus.SCHEDULED) for _ in range(3)]

    response = run_action(admin_client, "cancel_jobs", jobs)

    assert messages_of(response) == [
        "Nothing changed: select at most 2 jobs per action (narrow the list with its filters first)."
    ]
    assert {status_of(j) for j in jobs} == {JobStatus.SCHEDULED}


def test_an_action_with_nothing_selected_says_so(admin_client, broker):
    response = admin_client.post(reverse(CHANGELIST), {"action": "retry_jobs", "index": 0})

    assert response.status_code == 302
    assert "Items must be selected" in messages_of(response)[0]


# --------------------------------------------------------------------------- buttons on the detail page


def test_retry_button_retries_and_redirects_back_with_a_message(admin_client, broker):
    job = make_job(broker, JobStatus.FAILED)

    response = admin_client.post(action_url(job, "retry"))

    assert response.status_code == 302 and response["Location"] == change_url(job)
    assert messages_of(response) == [f"Job {str(job.pk)[:8]} retried."]
    assert status_of(job) == JobStatus.QUEUED
    dispatch.flush()
    assert broker.location(str(job.pk), job.queue) == "ready"


def test_retry_button_on_a_succeeded_job_is_skipped_with_the_reason(admin_client, broker):
    job = make_job(broker, JobStatus.SUCCEEDED)

    response = admin_client.post(action_url(job, "retry"))

    assert response.status_code == 302
    assert messages_of(response) == [f"Job {str(job.pk)[:8]} not changed: already succeeded."]
    assert status_of(job) == JobStatus.SUCCEEDED


def test_run_now_button_queues_a_scheduled_job(admin_client, broker):
    job = make_job(broker, JobStatus.SCHEDULED)

    response = admin_client.post(action_url(job, "run-now"))

    assert messages_of(response) == [f"Job {str(job.pk)[:8]} queued to run now."]
    assert status_of(job) == JobStatus.QUEUED


# --------------------------------------------------------------------------- permissions


def test_staff_without_change_job_gets_403_on_the_action_urls_and_nothing_changes(client, broker, staff_user):
    failed = make_job(broker, JobStatus.FAILED)
    scheduled = make_job(broker, JobStatus.SCHEDULED)
    client.force_login(staff_user("view_job"))

    assert client.post(action_url(failed, "retry")).status_code == 403
    assert client.post(action_url(scheduled, "cancel")).status_code == 403
    assert client.post(action_url(scheduled, "run-now")).status_code == 403
    run_action(client, "retry_jobs", [failed])
    run_action(client, "cancel_jobs", [scheduled])

    assert status_of(failed) == JobStatus.FAILED
    assert status_of(scheduled) == JobStatus.SCHEDULED


def test_staff_without_change_job_sees_no_buttons_and_no_actions(client, broker, staff_user):
    failed = make_job(broker, JobStatus.FAILED)
    client.force_login(staff_user("view_job"))

    detail = client.get(change_url(failed))
    listing = client.get(reverse(CHANGELIST))

    assert detail.status_code == 200 and buttons_on(detail.content.decode()) == []
    assert "ValueError: boom" in detail.content.decode()  # attempts are visible to whoever sees the job
    assert listing.status_code == 200 and "retry_jobs" not in listing.content.decode()


def test_staff_with_change_job_can_retry(client, broker, staff_user):
    failed = make_job(broker, JobStatus.FAILED)
    client.force_login(staff_user("view_job", "change_job"))

    assert buttons_on(client.get(change_url(failed)).content.decode()) == ["retry"]
    response = client.post(action_url(failed, "retry"))

    assert response.status_code == 302
    assert status_of(failed) == JobStatus.QUEUED


def test_anonymous_action_post_goes_to_login_and_changes_nothing(client, broker):
    failed = make_job(broker, JobStatus.FAILED)

    response = client.post(action_url(failed, "retry"))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert status_of(failed) == JobStatus.FAILED


def test_a_button_post_without_csrf_token_is_rejected(admin_user, broker):
    failed = make_job(broker, JobStatus.FAILED)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    assert client.post(action_url(failed, "retry")).status_code == 403
    assert status_of(failed) == JobStatus.FAILED


def test_jobs_cannot_be_added_edited_or_deleted_in_the_admin(admin_client, broker):
    job = make_job(broker, JobStatus.SCHEDULED)

    assert admin_client.get(reverse("admin:jobs_job_add")).status_code == 403
    assert admin_client.post(change_url(job), {"status": "queued", "priority": "50"}).status_code == 405
    assert admin_client.get(reverse("admin:jobs_job_delete", args=[job.pk])).status_code == 403
    job_after = Job.objects.get(pk=job.pk)
    assert (job_after.status, job_after.priority) == (JobStatus.SCHEDULED, 0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("object_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%27%3B--"])
def test_a_button_for_a_missing_or_malformed_job_id_gives_a_message_not_a_500(admin_client, object_id):
    response = admin_client.post(f"/admin/jobs/job/{object_id}/retry/")

    assert response.status_code == 302 and response["Location"] == reverse(CHANGELIST)
    assert "exists (it may have been pruned)" in messages_of(response)[0]


def test_action_urls_refuse_get(admin_client, broker):
    job = make_job(broker, JobStatus.FAILED)

    assert admin_client.get(action_url(job, "retry")).status_code == 405
    assert status_of(job) == JobStatus.FAILED


@pytest.mark.parametrize(
    "params",
    [
        {"created_at__gte": "not a date"},
        {"p": "999"},
        {"p": "abc"},
        {"o": "99"},
        {"status__exact": "exploded"},
        {"queue": "no-such-queue"},
        {"q": "%' OR 1=1 --"},
        {"q": "-"},
        {"q": "x" * 2000},
    ],
)
def test_odd_changelist_parameters_never_give_a_500(admin_client, broker, params):
    make_job(broker, JobStatus.QUEUED)

    response = admin_client.get(reverse(CHANGELIST), params)

    assert response.status_code in (200, 302)
