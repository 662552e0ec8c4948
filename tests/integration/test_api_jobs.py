"""``/api/jobs/``: submit (validation, idempotency, throttling, outages), list, detail, actions, auth."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import dispatch, registry, services
from jobs.api.exceptions import translate
from jobs.dispatch import get_broker, reset_broker
from jobs.errors import IdempotencyConflict, IllegalTransition, InvalidJob, PayloadTooLarge
from jobs.models import IdempotencyKey, Job, JobStatus
from jobs.redaction import REDACTED
from tests.support.api import (
    JOBS_URL,
    client_for,
    dead_job,
    make_user,
    operator,
    postgres_unreachable,
    running_job,
    succeeded_job,
)

pytestmark = pytest.mark.django_db
# For tests that need commits to happen: Redis dispatch on commit, other threads' connections, outages.
transactional = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _isolated(broker, settings) -> None:
    """Each test gets its own Redis prefix (throttle windows, metrics) and uncached PostgreSQL counts."""
    settings.JOBQUEUE_API_STATS_PG_TTL = 0


@pytest.fixture
def secret_type() -> Iterator[str]:
    """A temporary job type whose ``api_token`` payload field is sensitive."""

    @registry.job("test.api.secret", sensitive=("api_token",))
    def secret(user: str = "", api_token: str = "") -> None:
        return None

    yield "test.api.secret"
    registry.unregister("test.api.secret")


# Nested one level deeper than the API accepts.
DEEP = 1
for _ in range(40):
    DEEP = [DEEP]


def post_job(client: APIClient, body: object, **headers: str):
    """POST ``body`` as a client would send it (``json.dumps``, so lone surrogates travel escaped)."""
    return client.generic(
        "POST", JOBS_URL, json.dumps(body), content_type="application/json", headers=headers
    )


# --------------------------------------------------------------------------- submit: happy paths


@transactional
def test_submitting_a_job_returns_201_records_it_for_the_user_and_dispatches_it(broker):
    client = client_for(make_user("alice", "add_job"))

    response = post_job(client, {"type": "test.ok", "payload": {"value": 7}, "queue": "high", "priority": 5})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["type"] == "test.ok" and body["status"] == "queued" and body["payload"] == {"value": 7}
    assert body["queue"] == "high" and body["priority"] == 5 and body["owner"] == "alice"
    assert response["Location"] == body["url"] and body["url"].endswith(f"/api/jobs/{body['id']}/")
    job = Job.objects.get(pk=body["id"])
    assert job.kwargs == {"value": 7} and job.owner.username == "alice"
    dispatch.flush()
    assert broker.location(body["id"], "high") == "ready"


@transactional
def test_a_delay_makes_a_scheduled_job_and_run_at_needs_an_offset(broker):
    client = client_for(make_user("alice", "add_job"))

    delayed = post_job(client, {"type": "test.ok", "delay": 3600})
    later = (timezone.now() + timedelta(days=30)).replace(hour=10, minute=0, second=0, microsecond=0)
    at = post_job(client, {"type": "test.ok", "run_at": later.strftime("%Y-%m-%dT10:00:00+02:00")})

    assert delayed.status_code == 201 and delayed.json()["status"] == "scheduled"
    run_at = datetime.fromisoformat(delayed.json()["run_at"])
    assert timedelta(minutes=59) < run_at - timezone.now() <= timedelta(hours=1)
    assert at.status_code == 201 and datetime.fromisoformat(at.json()["run_at"]) == later.replace(
        hour=8, tzinfo=UTC
    )
    dispatch.flush()
    assert broker.location(delayed.json()["id"], "default") == "delayed"


def test_sensitive_payload_fields_are_redacted_in_every_response(secret_type):
    client = client_for(make_user("alice", "add_job", "view_job"))

    created = post_job(client, {"type": secret_type, "payload": {"user": "ada", "api_token": "s3cr3t"}})
    job_id = created.json()["id"]
    listed = client.get(JOBS_URL).json()["results"][0]
    detail = client.get(f"{JOBS_URL}{job_id}/").json()

    for body in (created.json(), listed, detail):
        assert body["payload"] == {"user": "ada", "api_token": REDACTED}
    assert "s3cr3t" not in created.content.decode() + client.get(JOBS_URL).content.decode()
    assert Job.objects.get(pk=job_id).kwargs["api_token"] == "s3cr3t"


# --------------------------------------------------------------------------- submit: bad input


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({}, "type", "This field is required."),
        ({"type": "no.such.type"}, "type", 'Unknown job type "no.such.type". Registered types:'),
        ({"type": "test.ok", "colour": "red"}, "colour", "Unknown field. Allowed fields: type, payload"),
        ({"type": "test.ok", "payload": [1, 2]}, "payload", "Must be a JSON object."),
        ({"type": "test.ok", "payload": "value=1"}, "payload", "Must be a JSON object."),
        ({"type": "test.ok", "args": {"a": 1}}, "args", "Must be a JSON array."),
        ({"type": "test.ok", "priority": "high"}, "priority", "A valid integer is required."),
        ({"type": "test.ok", "priority": 10**30}, "priority", "less than or equal to 100"),
        ({"type": "test.ok", "priority": 1.5}, "priority", "A valid integer is required."),
        ({"type": "test.ok", "max_attempts": 0}, "max_attempts", "greater than or equal to 1"),
        ({"type": "test.ok", "queue": "no spaces!"}, "queue", "Must be 1-64 characters"),
        ({"type": "test.ok", "delay": -1}, "delay", "greater than or equal to 0"),
        ({"type": "test.ok", "delay": "soon"}, "delay", "A valid number is required."),
        ({"type": "test.ok", "timeout": 0}, "timeout", "Must be a number of seconds above 0"),
        ({"type": "test.ok", "run_at": "2030-01-01T00:00:00"}, "run_at", "Must include a UTC offset"),
        ({"type": "test.ok", "run_at": "tomorrow"}, "run_at", "Must be an ISO 8601 date-time"),
        ({"type": "test.ok", "run_at": "0001-01-01T00:00:00+05:00"}, "run_at", "Must be an ISO 8601"),
        ({"type": "test.ok", "run_at": "2030-01-01T00:00:00Z", "delay": 5}, "delay", "not both"),
        ({"type": "test.ok", "payload": {"v": "a\u0000b"}}, "payload", "must not contain NUL"),
        ({"type": "test.ok", "payload": {"v": "\ud800"}}, "payload", "no lone surrogates"),
        ({"type": "test.ok", "args": DEEP}, "args", "nested too deeply"),
        ({"type": "test.needs_args", "payload": {}}, "payload", "missing a required argument: 'count'"),
        ({"type": "test.ok", "payload": {"nope": 1}}, "payload", "unexpected keyword argument 'nope'"),
        (["test.ok"], "non_field_errors", "Expected a dictionary, but got list."),
    ],
)
def test_each_bad_field_is_a_400_naming_the_field(body, field, fragment):
    client = client_for(make_user("alice", "add_job"))

    response = post_job(client, body)

    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert any(fragment in message for message in errors[field]), errors[field]
    assert not Job.objects.exists()


def test_unknown_type_lists_the_registered_types():
    client = client_for(make_user("alice", "add_job"))

    (message,) = post_job(client, {"type": "nope"}).json()["type"]

    names = [job_type.name for job_type in registry.api_types()]
    assert {"test.ok", "email.send"} <= set(names)
    assert all(name in message for name in names)


def test_several_bad_fields_are_reported_together():
    client = client_for(make_user("alice", "add_job"))

    errors = post_job(client, {"type": "test.ok", "priority": 500, "args": "x", "extra": 1}).json()

    assert set(errors) == {"priority", "args", "extra"}


@pytest.mark.parametrize(
    ("raw", "content_type", "code", "fragment"),
    [
        (b'{"type": "test.ok",', "application/json", 400, "JSON parse error"),
        (b'{"type": "test.ok", "delay": NaN}', "application/json", 400, "JSON parse error"),
        (b'{"type": "test.ok", "delay": Infinity}', "application/json", 400, "JSON parse error"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),
        (b"\xff\xfe", "application/json", 400, "JSON parse error"),
        (b"type=test.ok", "application/x-www-form-urlencoded", 415, "Unsupported media type"),
        (b"type: test.ok", "text/yaml", 415, "Unsupported media type"),
    ],
)
def test_malformed_bodies_and_wrong_content_types_are_client_errors(raw, content_type, code, fragment):
    client = client_for(make_user("alice", "add_job"))

    response = client.generic("POST", JOBS_URL, raw, content_type=content_type)

    assert response.status_code == code, response.content
    assert fragment in response.json()["detail"]


def test_an_oversized_payload_is_a_413_with_the_limit(settings):
    settings.JOBQUEUE_MAX_PAYLOAD_BYTES = 1000
    client = client_for(make_user("alice", "add_job"))

    response = post_job(client, {"type": "test.ok", "payload": {"value": "x" * 2000}})

    assert response.status_code == 413
    (message,) = response.json()["payload"]
    assert "the limit is 1000" in message
    assert not Job.objects.exists()


def test_a_huge_body_is_refused_by_its_length_before_parsing(settings):
    settings.JOBQUEUE_MAX_PAYLOAD_BYTES = 1000
    client = client_for(make_user("alice", "add_job"))
    body = json.dumps({"type": "test.ok", "payload": {"value": "x" * 100_000}})

    response = client.generic("POST", JOBS_URL, body, content_type="application/json")

    assert response.status_code == 413
    assert (
        f"Request body is {len(body)} bytes; the payload limit is 1000 bytes." in response.json()["payload"]
    )


# --------------------------------------------------------------------------- idempotency


def test_the_same_idempotency_key_and_body_returns_the_original_job_with_200():
    client = client_for(make_user("alice", "add_job"))
    body = {"type": "test.ok", "payload": {"value": 42}}

    first = post_job(client, body, **{"Idempotency-Key": "order-42"})
    again = post_job(client, {**body, "args": []}, **{"Idempotency-Key": "order-42"})

    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_a_409():
    client = client_for(make_user("alice", "add_job"))
    post_job(client, {"type": "test.ok", "payload": {"value": 42}}, **{"Idempotency-Key": "order-42"})

    response = post_job(
        client, {"type": "test.ok", "payload": {"value": 43}}, **{"Idempotency-Key": "order-42"}
    )

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Idempotency key 'order-42' was already used for a different request."
    }
    assert Job.objects.count() == 1


def test_another_users_identical_key_is_a_different_job():
    alice, bob = client_for(make_user("alice", "add_job")), client_for(make_user("bob", "add_job"))
    body = {"type": "test.ok", "payload": {"value": 42}}

    mine = post_job(alice, body, **{"Idempotency-Key": "order-42"})
    theirs = post_job(bob, body, **{"Idempotency-Key": "order-42"})

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert IdempotencyKey.objects.filter(key="order-42").count() == 2


def test_idempotency_keys_outlive_their_jobs():
    client = client_for(make_user("alice", "add_job"))
    first = post_job(client, {"type": "test.ok"}, **{"Idempotency-Key": "k"})
    Job.objects.filter(pk=first.json()["id"]).delete()  # pruned

    response = post_job(client, {"type": "test.ok"}, **{"Idempotency-Key": "k"})

    assert response.status_code == 409 and "pruned" in response.json()["detail"]
    assert not Job.objects.exists()


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve"])
def test_a_malformed_idempotency_key_is_a_400(key):
    client = client_for(make_user("alice", "add_job"))

    response = client.post(
        JOBS_URL, {"type": "test.ok"}, format="json", HTTP_IDEMPOTENCY_KEY=key.encode().decode("latin-1")
    )

    assert response.status_code == 400
    assert response.json() == {"Idempotency-Key": ["Must be 1-255 printable ASCII characters."]}


def _race(requests: list[dict], key: str) -> list:
    """Send the bodies at once from as many threads, each with its own connection and token client."""
    user = make_user("racer", "add_job")
    clients = [client_for(user) for _ in requests]  # one token, one client per thread
    barrier = threading.Barrier(len(requests))
    responses: list = [None] * len(requests)

    def send(index: int, body: dict) -> None:
        try:
            client = clients[index]
            barrier.wait()
            responses[index] = post_job(client, body, **{"Idempotency-Key": key})
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i, body)) for i, body in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@transactional
def test_concurrent_requests_with_one_key_and_body_create_exactly_one_job(broker):
    responses = _race([{"type": "test.ok", "payload": {"value": 1}}] * 8, key="race")

    codes = sorted(response.status_code for response in responses)
    assert codes == [200] * 7 + [201], [r.content for r in responses]
    assert len({response.json()["id"] for response in responses}) == 1
    assert Job.objects.count() == 1
    dispatch.flush()
    assert broker.client.zcard(broker.key("ready", "default")) == 1


@transactional
def test_concurrent_requests_with_one_key_and_different_bodies_create_one_job_and_conflict():
    responses = _race([{"type": "test.ok", "payload": {"value": n}} for n in range(6)], key="race")

    codes = sorted(response.status_code for response in responses)
    assert codes == [201] + [409] * 5, [r.content for r in responses]
    assert Job.objects.count() == 1


# --------------------------------------------------------------------------- throttling


def test_job_creation_is_throttled_per_user_with_retry_after(settings, broker):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"job_create": "3/minute"},
    }
    alice = make_user("alice", "add_job", "view_job")
    client = client_for(alice)

    codes = [post_job(client, {"type": "test.ok"}).status_code for _ in range(3)]
    throttled = post_job(client, {"type": "test.ok"})

    assert codes == [201, 201, 201]
    assert throttled.status_code == 429
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert throttled.json()["detail"].startswith("Request was throttled. Expected available in")
    assert post_job(client_for(make_user("bob", "add_job")), {"type": "test.ok"}).status_code == 201
    assert client.get(JOBS_URL).status_code == 200  # reads are not throttled
    # The window lives in Redis, so another web process (a fresh connection here) sees the same budget.
    assert broker.client.zcard(broker.key("throttle", "job_create", str(alice.pk))) == 3
    reset_broker()
    assert post_job(client, {"type": "test.ok"}).status_code == 429


# --------------------------------------------------------------------------- outages


@transactional
def test_submitting_while_redis_is_down_still_returns_201_and_the_reconciler_dispatches_later(
    settings, caplog
):
    client = client_for(make_user("alice", "add_job"))
    redis_url = settings.REDIS_URL
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    reset_broker()

    response = post_job(client, {"type": "test.ok"})

    assert response.status_code == 201, response.content
    assert Job.objects.get(pk=response.json()["id"]).status == JobStatus.QUEUED
    dispatch.flush()  # the failed push is logged by the pusher thread
    assert "to be dispatched by the reconciler" in caplog.text
    settings.REDIS_URL = redis_url
    reset_broker()
    broker = get_broker()
    assert broker.location(response.json()["id"], "default") is None
    services.reconcile(broker, settle_seconds=0)  # at once, not after the usual settling delay
    dispatch.flush()
    assert broker.location(response.json()["id"], "default") == "ready"


@transactional
def test_postgresql_down_is_a_503_with_retry_after(tmp_path):
    alice = make_user("alice", "add_job", "view_job")
    token_client = client_for(alice)
    assert alice.has_perm("jobs.add_job")  # cached on the object: the request gets as far as the services
    session_less = APIClient()
    session_less.force_authenticate(alice)

    with postgres_unreachable(tmp_path):
        submitted = post_job(session_less, {"type": "test.ok"})
        listed = token_client.get(JOBS_URL)  # the token lookup itself needs the database

    for response in (submitted, listed):
        assert response.status_code == 503, response.content
        assert response["Retry-After"] == "5"
        assert response.json() == {"detail": "The database is unavailable; retry shortly."}
    assert token_client.get(JOBS_URL).status_code == 200  # back once PostgreSQL is


def test_engine_errors_map_to_http_errors_with_api_field_names():
    assert translate(InvalidJob({"kwargs": ["bad"]})).detail == {"payload": ["bad"]}
    assert translate(PayloadTooLarge({"kwargs": ["big"]})).status_code == 413
    conflict = translate(IllegalTransition("nope", status="queued"))
    assert conflict.status_code == 409 and conflict.detail == {"detail": "nope", "job_status": "queued"}
    assert translate(IdempotencyConflict("used")).status_code == 409
    assert translate(Job.DoesNotExist()).status_code == 404


# --------------------------------------------------------------------------- list, filters, pagination


def test_listing_filters_by_status_type_queue_and_search(broker):
    client = operator()
    first = services.enqueue("test.ok", queue="high")
    services.enqueue("test.fail")
    cancelled = services.cancel(services.enqueue("test.ok").pk)
    keyed = services.enqueue("test.sleep", idempotency_key="invoice-7")

    def ids(query: str) -> set[str]:
        response = client.get(f"{JOBS_URL}?{query}")
        assert response.status_code == 200, response.content
        return {job["id"] for job in response.json()["results"]}

    assert ids("status=cancelled") == {str(cancelled.pk)}
    assert ids("status=cancelled,queued") == {str(j.pk) for j in Job.objects.all()}
    assert ids("type=test.fail&type=test.sleep") == {str(j.pk) for j in Job.objects.exclude(type="test.ok")}
    assert ids("queue=high") == {str(first.pk)}
    assert ids("search=invoice-7") == {str(keyed.pk)}
    assert ids(f"search={first.pk}") == {str(first.pk)}
    assert ids("search=sleep") == {str(keyed.pk)}


def test_listing_filters_by_creation_time(broker):
    client = operator()
    old = services.enqueue("test.ok")
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    new = services.enqueue("test.ok")
    yesterday = (timezone.now() - timedelta(days=1)).isoformat().replace("+", "%2B")

    after = client.get(f"{JOBS_URL}?created_after={yesterday}").json()["results"]
    before = client.get(f"{JOBS_URL}?created_before={yesterday}").json()["results"]

    assert [job["id"] for job in after] == [str(new.pk)]
    assert [job["id"] for job in before] == [str(old.pk)]


def test_cursor_pagination_walks_every_job_once_newest_first(broker):
    client = operator()
    created = [str(services.enqueue("test.ok", kwargs={"value": i}).pk) for i in range(5)]

    seen, url = [], f"{JOBS_URL}?page_size=2"
    while url:
        page = client.get(url).json()
        seen += [job["id"] for job in page["results"]]
        url = page["next"]

    assert seen == created[::-1]
    oldest_first = client.get(f"{JOBS_URL}?ordering=seq&page_size=10").json()["results"]
    assert [job["id"] for job in oldest_first] == created


@pytest.mark.parametrize(
    ("query", "field", "fragment"),
    [
        ("cursor=not-a-cursor", "cursor", "Invalid cursor"),
        ("cursor=" + base64.b64encode(b"p=abc").decode(), "cursor", "Invalid cursor"),
        ("cursor=" + base64.b64encode(b"p=99999999999999999999999").decode(), "cursor", "Invalid cursor"),
        ("ordering=-created_at&cursor=" + base64.b64encode(b"p=yesterday").decode(), "cursor", "Invalid"),
        ("status=lost", "status", "Unknown status 'lost'. Choose from: scheduled, queued"),
        ("ordering=priority", "ordering", "Must be one of: -seq, seq, -created_at, created_at."),
        ("created_after=last+week", "created_after", "Must be an ISO 8601 date or date-time"),
        ("type=a%00b", "type", "must not contain NUL"),
        ("search=" + "x" * 201, "search", "Too long."),
    ],
)
def test_bad_list_parameters_are_a_400_naming_the_parameter(query, field, fragment):
    response = operator().get(f"{JOBS_URL}?{query}")

    assert response.status_code == 400, response.content
    assert any(fragment in message for message in response.json()[field]), response.json()


def test_the_browsable_api_renders_html_with_a_submit_form_for_a_signed_in_user():
    client = APIClient()
    client.force_login(make_user("alice", "add_job", "view_job"))

    response = client.get(JOBS_URL, HTTP_ACCEPT="text/html")

    assert response.status_code == 200 and b"Job List" in response.content
    assert b'name="_content"' in response.content  # the raw JSON form for POST
    assert client.get("/api/", HTTP_ACCEPT="text/html").status_code == 200


def test_the_api_root_links_every_endpoint():
    links = client_for(make_user("alice")).get("/api/").json()

    assert links["jobs"].endswith("/api/jobs/") and links["dead_letters"].endswith("/api/dead-letters/")
    assert links["prometheus"].endswith("/metrics") and links["docs"].endswith("/api/docs/")
    assert {"workers", "job_types", "stats", "metrics", "health", "schema"} <= set(links)


def test_options_describes_the_submit_fields():
    response = client_for(make_user("alice", "add_job", "view_job")).options(JOBS_URL)

    assert response.status_code == 200
    fields = response.json()["actions"]["POST"]
    assert (
        fields["type"]["required"] is True
        and {"value": "test.ok", "display_name": "test.ok"} in fields["type"]["choices"]
    )


# --------------------------------------------------------------------------- detail, retry, cancel


@transactional
def test_detail_shows_attempts_and_the_dead_letter(broker):
    job = dead_job(broker, error="ValueError: kaput")

    body = operator().get(f"{JOBS_URL}{job.pk}/").json()

    assert body["status"] == "failed" and body["attempts"] == 1
    (attempt,) = body["attempt_history"]
    assert (
        attempt["number"] == 1 and attempt["outcome"] == "failed" and attempt["error"] == "ValueError: kaput"
    )
    assert attempt["worker"] and attempt["duration"] is not None
    assert (
        body["dead_letter"]["resolution"] == "open" and body["dead_letter"]["reason"] == "ValueError: kaput"
    )


@pytest.mark.parametrize("job_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "1"])
def test_an_unknown_job_is_a_404(job_id):
    client = operator()

    for response in (
        client.get(f"{JOBS_URL}{job_id}/"),
        client.post(f"{JOBS_URL}{job_id}/retry/"),
        client.post(f"{JOBS_URL}{job_id}/cancel/"),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] in {"No Job matches the given query.", "Not found."}


@transactional
def test_cancel_a_waiting_job_then_retry_it(broker):
    client = operator()
    job = services.enqueue("test.ok")

    cancelled = client.post(f"{JOBS_URL}{job.pk}/cancel/")
    retried = client.post(f"{JOBS_URL}{job.pk}/retry/")

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    dispatch.flush()
    assert broker.location(str(job.pk), "default") == "ready"


@transactional
def test_cancelling_a_running_job_asks_its_worker_and_answers_202(broker):
    job = running_job(broker)

    response = operator().post(f"{JOBS_URL}{job.pk}/cancel/")

    assert response.status_code == 202
    assert response.json()["status"] == "running" and response.json()["cancel_requested_at"]


@transactional
@pytest.mark.parametrize(
    ("make", "action", "message"),
    [
        (succeeded_job, "cancel", "cannot cancel a job that is already succeeded"),
        (succeeded_job, "retry", "only failed or cancelled jobs can be retried; this one is succeeded"),
        (lambda broker: services.enqueue("test.ok"), "retry", "this one is queued"),
        (running_job, "retry", "this one is running"),
    ],
)
def test_illegal_transitions_are_a_409_with_the_reason(broker, make, action, message):
    job = make(broker)
    status = Job.objects.get(pk=job.pk).status

    response = operator().post(f"{JOBS_URL}{job.pk}/{action}/")

    assert response.status_code == 409
    assert message in response.json()["detail"] and response.json()["job_status"] == status
    assert Job.objects.get(pk=job.pk).status == status


# --------------------------------------------------------------------------- authentication and permissions


def test_reads_and_writes_need_an_authenticated_user():
    anonymous = APIClient()

    for response in (anonymous.get(JOBS_URL), post_job(anonymous, {"type": "test.ok"})):
        assert response.status_code == 401
        assert response.json() == {"detail": "Authentication credentials were not provided."}
        assert response["WWW-Authenticate"] == "Token"
    assert not Job.objects.exists()


@pytest.mark.parametrize("header", ["Token wrong", "Bearer wrong", "Token a\x00b", "Token", "Bearer a b"])
def test_bad_tokens_are_a_401(header):
    response = APIClient().get(JOBS_URL, HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert "token" in response.json()["detail"].lower()


def test_a_bearer_token_works_like_a_drf_token():
    user = make_user("alice", "add_job", "view_job")

    assert client_for(user, keyword="Bearer").get(JOBS_URL).status_code == 200
    assert post_job(client_for(user, keyword="Bearer"), {"type": "test.ok"}).status_code == 201


def test_writes_need_the_model_permission(broker):
    reader = client_for(make_user("reader", "view_job"))
    submitter = client_for(make_user("submitter", "add_job"))
    job = services.enqueue("test.ok")
    denied = {"detail": "You do not have permission to perform this action."}

    assert reader.get(JOBS_URL).status_code == 200
    assert reader.get(f"{JOBS_URL}{job.pk}/").status_code == 200
    for response in (
        post_job(reader, {"type": "test.ok"}),
        reader.post(f"{JOBS_URL}{job.pk}/cancel/"),
        submitter.post(f"{JOBS_URL}{job.pk}/cancel/"),
        submitter.post(f"{JOBS_URL}{job.pk}/retry/"),
    ):
        assert response.status_code == 403 and response.json() == denied
    assert post_job(submitter, {"type": "test.ok"}).status_code == 201
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED


def test_session_writes_need_a_csrf_token():
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("alice", "add_job"))

    response = post_job(client, {"type": "test.ok"})

    assert response.status_code == 403 and "CSRF Failed" in response.json()["detail"]


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_methods_the_api_does_not_offer_are_a_405(broker, method):
    job = services.enqueue("test.ok")

    response = getattr(operator(), method)(f"{JOBS_URL}{job.pk}/", {}, format="json")

    assert response.status_code == 405
