"""Who may read what through the API: each read endpoint's view permission, staff, own-visibility
(``JOBQUEUE_API_VISIBILITY=own``), and the OpenAPI schema and docs (``JOBQUEUE_PUBLIC_API_DOCS``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

from jobs import services
from jobs.api.permissions import ActionPermissions, CanReadApiDocs, CanScrapeMetrics
from jobs.models import AttemptOutcome, DeadLetter
from jobs.values import JobSpec
from scheduling.models import Schedule
from tests.support.api import DEAD_LETTERS_URL, JOBS_URL, WORKER, claim, client_for, dead_job, make_user

pytestmark = pytest.mark.django_db(transaction=True)  # jobs reach Redis on commit


@pytest.fixture(autouse=True)
def _isolated(broker, settings) -> None:
    """Own Redis prefix (worker heartbeats, metrics) and uncached PostgreSQL counts."""
    settings.JOBQUEUE_API_STATS_PG_TTL = 0


@pytest.fixture
def objects(broker) -> dict[str, str]:
    """One of each object, so the detail endpoints have something to show: path -> URL."""
    job = dead_job(broker)
    schedule = Schedule.objects.create(name="nightly", type="test.ok", cron="0 3 * * *")
    return {
        "jobs-detail": f"{JOBS_URL}{job.pk}/",
        "dead-letters-detail": f"{DEAD_LETTERS_URL}{DeadLetter.objects.get(job=job).pk}/",
        "schedules-detail": f"/api/schedules/{schedule.pk}/",
    }


# endpoint -> (URL or a key of ``objects``, the one permission that lets a user read it)
READS = {
    "jobs": (JOBS_URL, "jobs.view_job"),
    "jobs-detail": ("jobs-detail", "jobs.view_job"),
    "dead-letters": (DEAD_LETTERS_URL, "jobs.view_deadletter"),
    "dead-letters-detail": ("dead-letters-detail", "jobs.view_deadletter"),
    "workers": ("/api/workers/", "jobs.view_job"),
    "job-types": ("/api/job-types/", "jobs.view_job"),
    "stats": ("/api/stats/", "jobs.view_job"),
    "metrics": ("/api/metrics/", "jobs.view_job"),
    "prometheus": ("/metrics", "jobs.view_job"),
    "schedules": ("/api/schedules/", "scheduling.view_schedule"),
    "schedules-detail": ("schedules-detail", "scheduling.view_schedule"),
}
# Permissions a user may hold that must not open any read they are not listed for.
UNRELATED = ["jobs.add_job", "jobs.change_job", "jobs.change_deadletter", "scheduling.change_schedule"]


def _url(endpoint: str, objects: dict[str, str]) -> str:
    where, _ = READS[endpoint]
    return objects.get(where, where)


@pytest.mark.parametrize("endpoint", list(READS))
def test_a_user_without_the_view_permission_is_refused_every_read(endpoint, objects):
    _, permission = READS[endpoint]
    others = [name for name in UNRELATED if name != permission]
    if endpoint == "job-types":
        others.remove("jobs.add_job")  # a submitter may read the job types (see the next test)
    user = make_user("nosy", *others)

    response = client_for(user).get(_url(endpoint, objects))

    assert response.status_code == 403, response.content


@pytest.mark.parametrize("endpoint", list(READS))
def test_the_view_permission_alone_opens_the_read(endpoint, objects):
    _, permission = READS[endpoint]

    response = client_for(make_user("viewer", permission)).get(_url(endpoint, objects))

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("endpoint", list(READS))
def test_staff_read_every_endpoint_without_permissions(endpoint, objects):
    response = client_for(make_user("staff", staff=True)).get(_url(endpoint, objects))

    assert response.status_code == 200, response.content


def test_a_submitter_may_read_the_job_types_to_build_its_forms():
    response = client_for(make_user("submitter", "jobs.add_job")).get("/api/job-types/")

    assert response.status_code == 200
    assert "test.ok" in {entry["name"] for entry in response.json()}


def test_a_user_without_permissions_cannot_read_jobs_payloads_or_dead_letter_errors(broker):
    job = dead_job(broker, error="ValueError: secret in the error")
    client = client_for(make_user("nobody"))

    for url in (JOBS_URL, f"{JOBS_URL}{job.pk}/", DEAD_LETTERS_URL):
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"secret in the error" not in response.content
        assert str(job.pk).encode() not in response.content


def test_the_api_root_and_health_keep_their_access():
    assert client_for(make_user("nobody")).get("/api/").status_code == 200
    assert APIClient().get("/api/").status_code == 401
    assert APIClient().get("/api/health/").status_code == 200


def test_anonymous_reads_are_401_with_the_token_challenge(objects):
    for endpoint in READS:
        response = APIClient().get(_url(endpoint, objects))
        assert response.status_code == 401, endpoint
        assert response["WWW-Authenticate"].startswith("Token"), endpoint


def test_every_api_view_uses_the_one_access_rule():
    """Every route of the API is guarded by jobs.api.permissions (health alone is public)."""
    allowed = {ActionPermissions, CanScrapeMetrics, CanReadApiDocs}

    def walk(patterns, prefix=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                yield prefix + str(entry.pattern), entry.callback

    seen = set()
    for route, callback in walk(get_resolver().url_patterns):
        view = getattr(callback, "cls", None)
        if not route.startswith(("api/", "metrics")) or route.startswith("api/auth/") or view is None:
            continue
        initkwargs = getattr(callback, "initkwargs", {})
        classes = set(initkwargs.get("permission_classes", view.permission_classes))
        seen.add(route)
        if route == "api/health/":
            assert classes == {AllowAny}
            continue
        assert classes and classes <= allowed, (route, classes)
        if ActionPermissions in classes:
            assert getattr(view, "read_permissions", None) is not None, route
    assert any("schedules/" in route for route in seen), seen


# --- own-visibility ------------------------------------------------------------------------------------


@pytest.fixture
def own(settings) -> None:
    settings.JOBQUEUE_API_VISIBILITY = "own"


PERMS = ("jobs.view_job", "jobs.change_job", "jobs.view_deadletter", "jobs.change_deadletter")


def _submit(client: APIClient) -> str:
    response = client.post(JOBS_URL, {"type": "test.ok"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _running(broker, user) -> Any:
    """A job ``user`` submitted, claimed by the test worker (the claimed job)."""
    return claim(broker, services.submit(JobSpec(type="test.ok"), owner_id=user.pk).job)


def _dead(broker, user) -> None:
    """A job ``user`` submitted that failed for good: it has an open dead letter."""
    outcome = services.after_failure(
        _running(broker, user), AttemptOutcome.FAILED, "ValueError: boom", "Traceback: …", permanent=True
    )
    services.settle(broker, [outcome], [], WORKER)


@pytest.mark.usefixtures("own")
def test_under_own_visibility_a_user_lists_only_the_jobs_it_submitted():
    alice = client_for(make_user("alice", "jobs.add_job", *PERMS))
    bob = client_for(make_user("bob", "jobs.add_job", *PERMS))
    mine = _submit(alice)
    theirs = _submit(bob)

    listed = {job["id"] for job in alice.get(JOBS_URL).json()["results"]}

    assert listed == {mine}
    assert {job["id"] for job in bob.get(JOBS_URL).json()["results"]} == {theirs}


@pytest.mark.usefixtures("own")
def test_under_own_visibility_another_users_job_is_a_404_to_read_retry_and_cancel():
    alice = client_for(make_user("alice", "jobs.add_job", *PERMS))
    bob = client_for(make_user("bob", "jobs.add_job", *PERMS))
    theirs = _submit(bob)

    assert alice.get(f"{JOBS_URL}{theirs}/").status_code == 404
    assert alice.post(f"{JOBS_URL}{theirs}/cancel/").status_code == 404
    assert alice.post(f"{JOBS_URL}{theirs}/retry/").status_code == 404
    assert bob.get(f"{JOBS_URL}{theirs}/").status_code == 200
    assert bob.post(f"{JOBS_URL}{theirs}/cancel/").status_code == 200
    assert bob.post(f"{JOBS_URL}{theirs}/retry/").status_code == 200


@pytest.mark.usefixtures("own")
def test_under_own_visibility_a_user_sees_the_dead_letters_of_its_jobs_only(broker):
    alice_user = make_user("alice", *PERMS)
    alice = client_for(alice_user)
    _dead(broker, alice_user)
    _dead(broker, make_user("bob"))
    mine_letter = DeadLetter.objects.get(job__owner=alice_user).pk
    their_letter = DeadLetter.objects.exclude(job__owner=alice_user).get().pk

    listed = {letter["id"] for letter in alice.get(DEAD_LETTERS_URL).json()["results"]}

    assert listed == {mine_letter}
    assert alice.get(f"{DEAD_LETTERS_URL}{their_letter}/").status_code == 404
    assert alice.post(f"{DEAD_LETTERS_URL}{their_letter}/retry/").status_code == 404
    assert alice.get(f"{DEAD_LETTERS_URL}{mine_letter}/").status_code == 200


@pytest.mark.usefixtures("own")
def test_under_own_visibility_workers_show_only_the_users_running_jobs(broker):
    alice_user = make_user("alice", *PERMS)
    mine = _running(broker, alice_user)
    theirs = _running(broker, make_user("bob"))
    broker.heartbeat(WORKER, {"current_jobs": [str(mine.id), str(theirs.id)]}, 60_000)

    workers = client_for(alice_user).get("/api/workers/").json()
    staff_view = client_for(make_user("staff", staff=True)).get("/api/workers/").json()

    assert [w["current_jobs"] for w in workers] == [[str(mine.id)]]
    assert sorted(staff_view[0]["current_jobs"]) == sorted([str(mine.id), str(theirs.id)])


@pytest.mark.usefixtures("own")
def test_under_own_visibility_staff_still_see_every_job():
    bob = client_for(make_user("bob", "jobs.add_job"))
    theirs = _submit(bob)
    services.enqueue("test.ok")  # a job from code: no owner

    staff = client_for(make_user("staff", staff=True))

    assert staff.get(f"{JOBS_URL}{theirs}/").status_code == 200
    assert len(staff.get(JOBS_URL).json()["results"]) == 2


# --- schema and docs --------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_the_schema_and_docs_need_a_login_by_default(url):
    anonymous = APIClient().get(url)
    signed_in = client_for(make_user("reader")).get(url)

    assert anonymous.status_code == 401
    assert signed_in.status_code == 200


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_public_api_docs_open_the_schema_and_docs_to_anyone(url, settings):
    settings.JOBQUEUE_PUBLIC_API_DOCS = True

    assert APIClient().get(url).status_code == 200
