"""The API access settings are read from the environment and checked when the settings load."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

SETTINGS = Path(__file__).resolve().parents[2] / "jobqueue_site" / "settings.py"


def test_api_visibility_defaults_to_all_and_docs_to_needing_a_login(monkeypatch):
    monkeypatch.delenv("JOBQUEUE_API_VISIBILITY", raising=False)
    monkeypatch.delenv("JOBQUEUE_PUBLIC_API_DOCS", raising=False)

    loaded = runpy.run_path(str(SETTINGS))

    assert loaded["JOBQUEUE_API_VISIBILITY"] == "all"
    assert loaded["JOBQUEUE_PUBLIC_API_DOCS"] is False


def test_own_visibility_and_public_docs_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("JOBQUEUE_API_VISIBILITY", "own")
    monkeypatch.setenv("JOBQUEUE_PUBLIC_API_DOCS", "1")

    loaded = runpy.run_path(str(SETTINGS))

    assert loaded["JOBQUEUE_API_VISIBILITY"] == "own"
    assert loaded["JOBQUEUE_PUBLIC_API_DOCS"] is True


@pytest.mark.parametrize(
    ("name", "value"), [("JOBQUEUE_API_VISIBILITY", "mine"), ("JOBQUEUE_PUBLIC_API_DOCS", "maybe")]
)
def test_a_bad_access_setting_is_a_startup_error_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(ImproperlyConfigured, match=name):
        runpy.run_path(str(SETTINGS))
