"""Brute-force protection of the login forms (django-axes): the admin's and the browsable API's session login.

Failures are counted per client IP and, separately, per username (``AXES_LOCKOUT_PARAMETERS``); reaching
the limit locks both out for the cool-off, with a 429 page. Logins here are real POSTs to the forms: a
``force_login`` (what the rest of the suite uses) never reaches ``authenticate()``, so Axes never sees it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from tests.support.api import client_for, make_user

pytestmark = pytest.mark.django_db

ADMIN_LOGIN = "/admin/login/"
API_LOGIN = "/api/auth/login/"
LIMIT = 3
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_logins(settings, broker) -> None:
    """A cheap hasher (PBKDF2 costs a second a login), a small limit, and a Redis prefix of its own."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password=PASSWORD, is_staff=True)


def attempt(url: str, username: str, password: str, ip: str = "10.0.0.1", client: Client | None = None):
    client = client or Client()
    response = client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)
    return response, client


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def fail(url: str, times: int, username: str = "alice", ip: str = "10.0.0.1") -> list[int]:
    return [attempt(url, username, "wrong", ip)[0].status_code for _ in range(times)]


def test_failed_admin_logins_lock_the_ip_out_even_with_the_right_password_afterwards(alice):
    assert fail(ADMIN_LOGIN, LIMIT) == [200] * (LIMIT - 1) + [429]

    response, client = attempt(ADMIN_LOGIN, "alice", PASSWORD)

    assert response.status_code == 429
    assert not logged_in(client)


def test_the_lockout_is_a_429_page_saying_why_and_for_how_long(alice):
    fail(ADMIN_LOGIN, LIMIT)

    response, _ = attempt(ADMIN_LOGIN, "alice", PASSWORD)

    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    text = response.content.decode()
    assert "Too many failed logins" in text
    assert f"{LIMIT} failed attempts" in text
    assert "Try again in 0:15:00" in text  # JOBQUEUE_LOGIN_COOLOFF's default, 15m
    assert "axes_reset" in text


def test_a_locked_out_ip_is_refused_for_other_usernames_and_a_locked_username_from_other_ips(alice):
    get_user_model().objects.create_user("bob", password=PASSWORD, is_staff=True)
    fail(ADMIN_LOGIN, LIMIT, username="alice", ip="10.0.0.1")

    same_ip_other_user, bob_client = attempt(ADMIN_LOGIN, "bob", PASSWORD, ip="10.0.0.1")
    other_ip_same_user, alice_client = attempt(ADMIN_LOGIN, "alice", PASSWORD, ip="10.0.0.2")
    unrelated, elsewhere_client = attempt(ADMIN_LOGIN, "bob", PASSWORD, ip="10.0.0.3")

    assert same_ip_other_user.status_code == 429 and not logged_in(bob_client)  # per IP
    assert other_ip_same_user.status_code == 429 and not logged_in(alice_client)  # per username
    assert unrelated.status_code == 302 and logged_in(elsewhere_client)


def test_failures_spread_over_usernames_from_one_ip_add_up(alice):
    codes = [attempt(ADMIN_LOGIN, f"guess{i}", "wrong")[0].status_code for i in range(LIMIT)]

    assert codes == [200] * (LIMIT - 1) + [429]
    assert attempt(ADMIN_LOGIN, "alice", PASSWORD)[0].status_code == 429


def test_a_successful_login_before_the_limit_starts_the_count_again(alice):
    assert fail(ADMIN_LOGIN, LIMIT - 1) == [200] * (LIMIT - 1)
    response, client = attempt(ADMIN_LOGIN, "alice", PASSWORD)
    assert response.status_code == 302 and logged_in(client)

    assert fail(ADMIN_LOGIN, LIMIT - 1) == [200] * (LIMIT - 1)  # would be 429s without the reset
    assert fail(ADMIN_LOGIN, 1) == [429]


def test_the_api_session_login_is_limited_and_shares_the_count_with_the_admin(alice):
    assert fail(API_LOGIN, LIMIT - 1) == [200] * (LIMIT - 1)
    assert fail(ADMIN_LOGIN, 1) == [429]  # the failures at /api/auth/login/ counted

    response, client = attempt(API_LOGIN, "alice", PASSWORD)

    assert response.status_code == 429
    assert not logged_in(client)
    assert "Too many failed logins" in response.content.decode()


def test_the_api_session_login_locks_out_by_itself(alice):
    assert fail(API_LOGIN, LIMIT) == [200] * (LIMIT - 1) + [429]
    assert attempt(API_LOGIN, "alice", PASSWORD)[0].status_code == 429


def test_api_tokens_are_not_counted_nor_refused_while_the_ip_is_locked_out(alice):
    get_user_model().objects.create_user("bob", password=PASSWORD, is_staff=True)
    fail(ADMIN_LOGIN, LIMIT)
    reader = client_for(make_user("reader", "view_job"))

    responses = [reader.get("/api/jobs/", REMOTE_ADDR="10.0.0.1") for _ in range(LIMIT + 1)]
    wrong_token = client_for(None)
    wrong_token.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    refused = [wrong_token.get("/api/jobs/", REMOTE_ADDR="10.0.0.9") for _ in range(LIMIT + 1)]

    assert [r.status_code for r in responses] == [200] * (LIMIT + 1)
    assert [r.status_code for r in refused] == [401] * (LIMIT + 1)  # bad tokens: 401s, never a lock-out
    assert attempt(ADMIN_LOGIN, "bob", PASSWORD, ip="10.0.0.9")[0].status_code == 302  # 10.0.0.9 not locked


def test_the_lockout_ends_after_the_cool_off(alice):
    fail(ADMIN_LOGIN, LIMIT)

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        response, client = attempt(ADMIN_LOGIN, "alice", PASSWORD)

    assert response.status_code == 302 and logged_in(client)


def test_axes_reset_unlocks_at_once(alice):
    fail(ADMIN_LOGIN, LIMIT)
    assert attempt(ADMIN_LOGIN, "alice", PASSWORD)[0].status_code == 429

    call_command("axes_reset", verbosity=0)
    response, client = attempt(ADMIN_LOGIN, "alice", PASSWORD)

    assert response.status_code == 302 and logged_in(client)


def test_lockouts_are_listed_in_the_admin_for_superusers(alice):
    fail(ADMIN_LOGIN, LIMIT, username="mallory", ip="10.6.6.6")
    root = get_user_model().objects.create_superuser("root", password=None)
    client = Client()
    client.force_login(root)

    index = client.get("/admin/").content.decode()
    attempts = client.get("/admin/axes/accessattempt/")
    failures = client.get("/admin/axes/accessfailurelog/")

    assert "/admin/axes/accessattempt/" in index and "/admin/axes/accessfailurelog/" in index
    assert attempts.status_code == 200
    assert "mallory" in attempts.content.decode() and "10.6.6.6" in attempts.content.decode()
    assert failures.status_code == 200
    assert failures.content.decode().count("mallory") >= LIMIT


def test_staff_without_the_axes_permissions_do_not_see_the_lockouts(alice):
    client = Client()
    client.force_login(make_user("clerk", "view_job", staff=True))

    assert "/admin/axes/" not in client.get("/admin/").content.decode()
    assert client.get("/admin/axes/accessattempt/").status_code == 403
