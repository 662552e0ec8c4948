"""The login lock-out settings (django-axes) are read from the environment and checked at load."""

from __future__ import annotations

import runpy
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

SETTINGS = Path(__file__).resolve().parents[2] / "jobqueue_site" / "settings.py"


def test_five_failures_lock_ip_and_username_out_for_fifteen_minutes_by_default(monkeypatch):
    monkeypatch.delenv("JOBQUEUE_LOGIN_FAILURE_LIMIT", raising=False)
    monkeypatch.delenv("JOBQUEUE_LOGIN_COOLOFF", raising=False)

    loaded = runpy.run_path(str(SETTINGS))

    assert loaded["AXES_FAILURE_LIMIT"] == 5
    assert loaded["AXES_COOLOFF_TIME"] == timedelta(minutes=15)
    assert loaded["AXES_LOCKOUT_PARAMETERS"] == ["ip_address", "username"]
    assert loaded["AXES_RESET_ON_SUCCESS"] is True
    # Axes' backend first (it refuses locked-out clients), its middleware last (it renders the 429).
    assert loaded["AUTHENTICATION_BACKENDS"][0] == "axes.backends.AxesStandaloneBackend"
    assert loaded["MIDDLEWARE"][-1] == "axes.middleware.AxesMiddleware"


@pytest.mark.parametrize(("raw", "expected"), [("30s", 30), ("2h", 7200), ("90", 90), ("1.5m", 90)])
def test_the_limit_and_cool_off_are_read_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv("JOBQUEUE_LOGIN_FAILURE_LIMIT", "10")
    monkeypatch.setenv("JOBQUEUE_LOGIN_COOLOFF", raw)

    loaded = runpy.run_path(str(SETTINGS))

    assert loaded["AXES_FAILURE_LIMIT"] == 10
    assert loaded["AXES_COOLOFF_TIME"] == timedelta(seconds=expected)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOBQUEUE_LOGIN_FAILURE_LIMIT", "many"),
        ("JOBQUEUE_LOGIN_FAILURE_LIMIT", "0"),
        ("JOBQUEUE_LOGIN_COOLOFF", "soon"),
        ("JOBQUEUE_LOGIN_COOLOFF", "0m"),
    ],
)
def test_a_bad_login_lockout_setting_is_a_startup_error_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(ImproperlyConfigured, match=name):
        runpy.run_path(str(SETTINGS))
