"""The dead-letter admin: list, detail with every attempt's error, retry and discard through jobs.services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from jobs import dispatch, registry, services
from jobs.models import DeadLetter, Job, JobStatus
from jobs.redaction import REDACTED
from tests.support.admin import buttons_on, fail_twice, make_job, messages_of, status_of

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:jobs_deadletter_changelist"


def dead_letter_of(job: Job) -> DeadLetter:
    return DeadLetter.objects.get(job=job)


def dl_url(dead: DeadLetter, name: str) -> str:
    return reverse(f"admin:jobs_deadletter_{name}", args=[dead.pk])


def run_action(client, action: str, dead_letters: list[DeadLetter]):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(d.pk) for d in dead_letters], "index": 0},
    )


@pytest.fixture
def secret_type() -> Iterator[str]:
    """A temporary job type whose ``password`` kwarg is sensitive."""
    name = "test.admin_dead_secret"

    def login(user: str = "", password: str = "") -> None:
        return None

    registry.job(name, sensitive=("password",))(login)
    yield name
    registry.unregister(name)


@pytest.fixture
def operator(django_user_model):
    def make(*codenames: str):
        user = django_user_model.objects.create_user(
            username="dl-operator", password="pw-123456", is_staff=True
        )
        perms = Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames)
        user.user_permissions.add(*perms)
        return user

    return make


def test_dead_letter_list_shows_type_reason_attempts_and_dead_since(admin_client, broker):
    job = fail_twice(broker, "email.send", kwargs={"to": "x@example.com"})

    response = admin_client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    html = response.content.decode()
    assert str(job.pk)[:8] in html and "email.send" in html
    assert "ValueError: second failure" in html  # the reason: the last error
    assert "2/2" in html
    assert '<span class="jq-badge jq-open">open</span>' in html
    assert "x@example.com" not in html


def test_dead_letter_detail_shows_every_attempts_error(admin_client, broker):
    dead = dead_letter_of(fail_twice(broker))

    response = admin_client.get(reverse("admin:jobs_deadletter_change", args=[dead.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "ValueError: flaky" in html and "ValueError: second failure" in html
    table = html[html.index('<table class="jq-errors">') :]
    assert table.index("ValueError: flaky") < table.index("ValueError: second failure")  # oldest first
    assert buttons_on(html) == ["retry", "discard"]


def test_sensitive_kwargs_are_redacted_on_the_dead_letter_detail(admin_client, broker, secret_type):
    job = make_job(broker, JobStatus.FAILED, secret_type, kwargs={"user": "ada", "password": "hunter2"})

    html = admin_client.get(
        reverse("admin:jobs_deadletter_change", args=[dead_letter_of(job).pk])
    ).content.decode()

    assert "hunter2" not in html and REDACTED in html and "ada" in html


def test_retry_action_requeues_open_dead_letters_and_skips_resolved_ones(admin_client, broker):
    open_ones = [dead_letter_of(make_job(broker, JobStatus.FAILED)) for _ in range(2)]
    discarded = dead_letter_of(make_job(broker, JobStatus.FAILED))
    services.discard_dead_letter(discarded.pk)

    response = run_action(admin_client, "retry_dead_letters", [*open_ones, discarded])

    assert response.status_code == 302
    assert messages_of(response) == ["2 retried; 1 skipped: already discarded"]
    assert {status_of(d.job) for d in open_ones} == {JobStatus.QUEUED}
    assert {DeadLetter.objects.get(pk=d.pk).resolution for d in open_ones} == {"retried"}
    assert status_of(discarded.job) == JobStatus.FAILED
    dispatch.flush()
    assert broker.location(str(open_ones[0].job_id), "default") == "ready"


def test_discard_action_closes_dead_letters_and_leaves_the_jobs_failed(admin_client, broker):
    dead = dead_letter_of(make_job(broker, JobStatus.FAILED))

    first = run_action(admin_client, "discard_dead_letters", [dead])
    again = run_action(admin_client, "discard_dead_letters", [dead])

    assert messages_of(first) == ["1 discarded"]
    assert messages_of(again)[-1] == "0 discarded; 1 skipped: already discarded"  # (unread ones stay queued)
    dead.refresh_from_db()
    assert dead.resolution == "discarded" and dead.resolved_at is not None
    assert status_of(dead.job) == JobStatus.FAILED


def test_retry_and_discard_buttons_redirect_back_with_a_message(admin_client, broker):
    retried = dead_letter_of(make_job(broker, JobStatus.FAILED))
    discarded = dead_letter_of(make_job(broker, JobStatus.FAILED))

    response = admin_client.post(dl_url(retried, "retry"))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:jobs_deadletter_change", args=[retried.pk])
    assert messages_of(response) == [f"Dead letter of job {str(retried.job_id)[:8]} retried."]
    response = admin_client.post(dl_url(discarded, "discard"))
    assert messages_of(response)[-1] == f"Dead letter of job {str(discarded.job_id)[:8]} discarded."

    assert status_of(retried.job) == JobStatus.QUEUED
    assert DeadLetter.objects.get(pk=discarded.pk).resolution == "discarded"
    # Resolved: no more buttons.
    html = admin_client.get(reverse("admin:jobs_deadletter_change", args=[retried.pk])).content.decode()
    assert buttons_on(html) == []


def test_staff_without_change_permissions_gets_403_and_nothing_changes(client, broker, operator):
    dead = dead_letter_of(make_job(broker, JobStatus.FAILED))
    client.force_login(operator("view_deadletter", "view_job"))

    assert client.post(dl_url(dead, "retry")).status_code == 403
    assert client.post(dl_url(dead, "discard")).status_code == 403
    run_action(client, "retry_dead_letters", [dead])
    html = client.get(reverse("admin:jobs_deadletter_change", args=[dead.pk])).content.decode()

    assert buttons_on(html) == []
    dead.refresh_from_db()
    assert dead.resolution == "" and status_of(dead.job) == JobStatus.FAILED


def test_retrying_a_dead_letter_also_needs_change_job(client, broker, operator):
    dead = dead_letter_of(make_job(broker, JobStatus.FAILED))
    client.force_login(operator("view_deadletter", "change_deadletter"))

    html = client.get(reverse("admin:jobs_deadletter_change", args=[dead.pk])).content.decode()
    assert buttons_on(html) == ["discard"]
    assert client.post(dl_url(dead, "retry")).status_code == 403
    assert status_of(dead.job) == JobStatus.FAILED
    assert client.post(dl_url(dead, "discard")).status_code == 302
    assert DeadLetter.objects.get(pk=dead.pk).resolution == "discarded"


@pytest.mark.parametrize("object_id", ["abc", "999999", "1%27"])
def test_a_button_for_a_missing_dead_letter_gives_a_message_not_a_500(admin_client, object_id):
    response = admin_client.post(f"/admin/jobs/deadletter/{object_id}/discard/")

    assert response.status_code == 302 and response["Location"] == reverse(CHANGELIST)
    assert "exists (it may have been pruned)" in messages_of(response)[0]


@pytest.mark.parametrize(
    "params",
    [
        {"state": "open"},
        {"state": "bogus"},
        {"type": "test.ok"},
        {"q": "zz-top"},
        {"dead_at__gte": "yesterday"},
    ],
)
def test_dead_letter_list_filters_and_odd_parameters_never_give_a_500(admin_client, broker, params):
    make_job(broker, JobStatus.FAILED)

    assert admin_client.get(reverse(CHANGELIST), params).status_code in (200, 302)


def test_dead_letters_cannot_be_added_or_deleted(admin_client, broker):
    dead = dead_letter_of(make_job(broker, JobStatus.FAILED))

    assert admin_client.get(reverse("admin:jobs_deadletter_add")).status_code == 403
    assert admin_client.post(reverse("admin:jobs_deadletter_delete", args=[dead.pk])).status_code == 403
    assert DeadLetter.objects.filter(pk=dead.pk).exists()
