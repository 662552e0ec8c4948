"""``POST /api/jobs/`` tells clients where they stand in the job-creation throttle's window.

``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (IETF draft fields, integers; Reset = seconds until the
oldest admission leaves the window) on every response of the throttled endpoint, 429 included, where
``Retry-After`` joins them. Redis down: the throttle fails open and the fields are left out.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from jobs import dispatch
from jobs.dispatch import reset_broker
from tests.support.api import JOBS_URL, client_for, make_user

pytestmark = pytest.mark.django_db

FIELDS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@pytest.fixture(autouse=True)
def _rate(settings, broker) -> None:
    """Three jobs a minute, in a Redis prefix of this test's own."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"job_create": "3/minute"},
    }


def post_job(client: APIClient, body: object):
    return client.generic("POST", JOBS_URL, json.dumps(body), content_type="application/json")


def fields(response) -> tuple[int, ...]:
    """The three fields as integers (``int()`` raises on anything else, e.g. ``"1.5"``)."""
    return tuple(int(response[name]) for name in FIELDS)


def test_admitted_submissions_carry_the_limit_and_count_the_remaining_down():
    client = client_for(make_user("alice", "add_job"))

    responses = [post_job(client, {"type": "test.ok"}) for _ in range(3)]

    assert [r.status_code for r in responses] == [201, 201, 201]
    values = [fields(r) for r in responses]
    assert [limit for limit, _, _ in values] == [3, 3, 3]
    assert [remaining for _, remaining, _ in values] == [2, 1, 0]
    assert all(1 <= reset <= 60 for _, _, reset in values)
    assert all(r["RateLimit-Reset"].isdigit() for r in responses)
    assert "Retry-After" not in responses[0]


def test_the_429_carries_all_four_fields_and_retry_after_matches_the_reset():
    client = client_for(make_user("alice", "add_job"))
    for _ in range(3):
        post_job(client, {"type": "test.ok"})

    throttled = post_job(client, {"type": "test.ok"})

    assert throttled.status_code == 429
    limit, remaining, reset = fields(throttled)
    assert (limit, remaining) == (3, 0)
    assert 1 <= reset <= 60
    assert int(throttled["Retry-After"]) == reset


def test_a_rejected_payload_still_counts_and_says_so():
    client = client_for(make_user("alice", "add_job"))

    bad = post_job(client, {"type": "no.such.type"})
    good = post_job(client, {"type": "test.ok"})

    assert bad.status_code == 400 and fields(bad)[:2] == (3, 2)
    assert good.status_code == 201 and fields(good)[:2] == (3, 1)


def test_each_user_has_a_window_and_reads_carry_no_rate_limit_fields():
    alice = client_for(make_user("alice", "add_job", "view_job"))
    bob = client_for(make_user("bob", "add_job"))
    post_job(alice, {"type": "test.ok"})

    assert fields(post_job(bob, {"type": "test.ok"}))[1] == 2
    listing = alice.get(JOBS_URL)
    assert listing.status_code == 200
    assert not any(name in listing for name in FIELDS)


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_submissions_are_admitted_without_rate_limit_fields(settings):
    client = client_for(make_user("alice", "add_job"))
    redis_url = settings.REDIS_URL
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    reset_broker()
    try:
        responses = [post_job(client, {"type": "test.ok"}) for _ in range(4)]  # over the limit of 3
        dispatch.flush()  # the failed pushes are logged by the pusher thread
    finally:
        settings.REDIS_URL = redis_url
        reset_broker()

    assert [r.status_code for r in responses] == [201] * 4  # fail open, as the throttle documents
    assert not any(name in r for r in responses for name in (*FIELDS, "Retry-After"))
