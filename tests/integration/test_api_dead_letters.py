"""``/api/dead-letters/`` (list, detail, retry, discard), ``/api/workers/`` and ``/api/job-types/``."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from jobs import dispatch
from jobs.models import DeadLetter, Job, JobStatus
from tests.support.api import DEAD_LETTERS_URL, client_for, dead_job, make_user, operator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _isolated(broker) -> None:
    """Each test gets its own Redis prefix."""


def test_dead_letters_are_listed_newest_first_with_their_job(broker):
    older = dead_job(broker, error="ValueError: first")
    newer = dead_job(broker, "test.permanent", error="PermanentError: second")

    response = operator().get(DEAD_LETTERS_URL)

    assert response.status_code == 200
    results = response.json()["results"]
    assert [item["job_id"] for item in results] == [str(newer.pk), str(older.pk)]
    first = results[0]
    assert first["job_type"] == "test.permanent" and first["queue"] == "default"
    assert first["job_status"] == "failed" and first["attempts"] == 1 and first["resolution"] == "open"
    assert first["reason"] == "PermanentError: second"
    assert first["errors"] == [{"attempt": 1, "outcome": "failed", "error": "PermanentError: second"}]
    assert first["job"].endswith(f"/api/jobs/{newer.pk}/")


def test_dead_letters_filter_by_resolution_and_type(broker):
    client = operator()
    kept = dead_job(broker)
    retried = dead_job(broker, "test.permanent")
    client.post(f"{DEAD_LETTERS_URL}{retried.dead_letter.pk}/retry/")

    def job_ids(query: str) -> list[str]:
        return [item["job_id"] for item in client.get(f"{DEAD_LETTERS_URL}?{query}").json()["results"]]

    assert job_ids("resolution=open") == [str(kept.pk)]
    assert job_ids("resolution=retried") == [str(retried.pk)]
    assert job_ids("type=test.permanent") == [str(retried.pk)]
    bad = client.get(f"{DEAD_LETTERS_URL}?resolution=lost")
    assert bad.status_code == 400
    assert bad.json() == {"resolution": ["Unknown resolution 'lost'. Choose from: open, retried, discarded."]}


def test_retrying_a_dead_letter_requeues_its_job_once(broker):
    job = dead_job(broker)
    url = f"{DEAD_LETTERS_URL}{job.dead_letter.pk}/retry/"
    client = operator()

    response = client.post(url)
    again = client.post(url)

    assert response.status_code == 200 and response.json()["id"] == str(job.pk)
    assert response.json()["status"] == "queued"
    dispatch.flush()
    assert broker.location(str(job.pk), "default") == "ready"
    assert DeadLetter.objects.get(pk=job.dead_letter.pk).resolution == DeadLetter.Resolution.RETRIED
    assert again.status_code == 409
    assert again.json()["detail"] == "this dead letter was already retried"


def test_discarding_a_dead_letter_closes_it_and_leaves_the_job_failed(broker):
    job = dead_job(broker)
    url = f"{DEAD_LETTERS_URL}{job.dead_letter.pk}/"
    client = operator()

    response = client.delete(url)
    again = client.delete(url)

    assert response.status_code == 204 and response.content == b""
    assert client.get(url).json()["resolution"] == "discarded"
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED
    assert again.status_code == 409 and again.json()["detail"] == "this dead letter was already discarded"
    retried = client.post(f"{url}retry/")
    assert retried.status_code == 409 and retried.json()["detail"] == "this dead letter was already discarded"


@pytest.mark.parametrize("pk", ["999999", "abc", "99999999999999999999999"])
def test_an_unknown_dead_letter_is_a_404(pk):
    client = operator()

    for response in (
        client.get(f"{DEAD_LETTERS_URL}{pk}/"),
        client.post(f"{DEAD_LETTERS_URL}{pk}/retry/"),
        client.delete(f"{DEAD_LETTERS_URL}{pk}/"),
    ):
        assert response.status_code == 404


def test_dead_letter_writes_need_their_model_permissions(broker):
    job = dead_job(broker)
    url = f"{DEAD_LETTERS_URL}{job.dead_letter.pk}/"
    job_changer = client_for(make_user("job-changer", "change_job", "delete_job"))
    retrier = client_for(make_user("retrier", "change_deadletter"))
    denied = {"detail": "You do not have permission to perform this action."}

    assert job_changer.get(url).json() == denied  # reading needs jobs.view_deadletter, not job permissions
    assert job_changer.post(f"{url}retry/").json() == denied
    assert job_changer.delete(url).json() == denied
    assert retrier.delete(url).status_code == 403
    assert APIClient().get(DEAD_LETTERS_URL).status_code == 401
    assert DeadLetter.objects.get(pk=job.dead_letter.pk).resolution == ""
    assert retrier.post(f"{url}retry/").status_code == 200


def test_bad_dead_letter_cursor_is_a_400():
    response = operator().get(f"{DEAD_LETTERS_URL}?cursor=%%%")

    assert response.status_code == 400
    assert response.json() == {
        "cursor": ["Invalid cursor: use the next/previous links from an earlier page."]
    }


# --------------------------------------------------------------------------- workers


def test_workers_are_listed_from_their_heartbeats(broker, settings):
    settings.JOBQUEUE_HEARTBEAT_SECONDS = 5
    info = {
        "hostname": "box-1",
        "pid": 4242,
        "queues": ["high", "default"],
        "concurrency": 8,
        "current_jobs": [],
    }
    broker.heartbeat("box-1:4242:aaaa", info, 60_000)
    broker.heartbeat("box-2:17:bbbb", {**info, "hostname": "box-2", "pid": 17}, 60_000)
    broker.client.zadd(broker.key("workers"), {"box-2:17:bbbb": broker.now_ms() - 60_000})  # went silent

    response = client_for(make_user("reader", "view_job")).get("/api/workers/")

    assert response.status_code == 200
    first, second = response.json()
    assert first["id"] == "box-1:4242:aaaa" and first["alive"] is True
    assert first["hostname"] == "box-1" and first["pid"] == 4242 and first["queues"] == ["high", "default"]
    assert first["concurrency"] == 8 and first["current_jobs"] == [] and first["last_heartbeat"]
    assert second["id"] == "box-2:17:bbbb" and second["alive"] is False


def test_workers_need_authentication_and_redis(settings):
    from jobs.dispatch import reset_broker

    assert APIClient().get("/api/workers/").status_code == 401
    client = client_for(make_user("reader", "view_job"))
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    reset_broker()

    response = client.get("/api/workers/")

    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json() == {"detail": "Redis is unavailable; retry shortly."}


# --------------------------------------------------------------------------- job types


def test_job_types_describe_defaults_and_parameters_for_building_forms(settings):
    response = client_for(make_user("reader", "view_job")).get("/api/job-types/")

    assert response.status_code == 200
    types = {item["name"]: item for item in response.json()}
    assert {"noop", "email.send", "test.ok", "test.needs_args"} <= set(types)
    needs_args = types["test.needs_args"]
    assert needs_args["queue"] == settings.JOBQUEUE_DEFAULT_QUEUE
    assert needs_args["max_attempts"] == settings.JOBQUEUE_DEFAULT_MAX_ATTEMPTS
    assert needs_args["timeout"] == settings.JOBQUEUE_DEFAULT_TIMEOUT
    assert needs_args["parameters"] == [
        {
            "name": "count",
            "kind": "positional_or_keyword",
            "required": True,
            "default": None,
            "annotation": "int",
            "sensitive": False,
        }
    ]
    failing = types["test.fail"]
    assert failing["max_attempts"] == 3 and failing["backoff"] == {"base": 0.2, "max": 1.0, "jitter": 0.25}
    assert types["test.sleep"]["description"].startswith("Sleeps in small steps")
    assert types["test.sleep"]["parameters"][0]["default"] == 1.0
    assert APIClient().get("/api/job-types/").status_code == 401
