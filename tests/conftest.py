"""Fixtures: real PostgreSQL (pytest-django's test database), real Redis, real worker processes.

Every test gets its own Redis key prefix, so tests are isolated and run in any
order; the prefix's keys are deleted afterwards.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

import tests.support.jobtypes  # noqa: F401  (registers the test job types in this process too)
from jobs.dispatch import get_broker, reset_broker
from tests.support.helpers import ManagePyProcesses, WorkerProcess
from workers.broker import Broker


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """One test database per pytest run, so concurrent runs on one server never collide."""
    from django.conf import settings

    for db in settings.DATABASES.values():
        test = db.setdefault("TEST", {})
        test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{os.getpid()}"


def _redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.fail("REDIS_URL is not set: run the tests with `make test`, which starts an embedded Redis")
    return url


@pytest.fixture
def redis_prefix(settings) -> Iterator[str]:
    prefix = f"jqt-{uuid.uuid4().hex[:12]}"
    settings.JOBQUEUE_REDIS_PREFIX = prefix
    reset_broker()
    yield prefix
    reset_broker()
    client = redis.Redis.from_url(_redis_url())
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.unlink(*keys[start : start + 500])
    client.close()


@pytest.fixture
def broker(redis_prefix: str) -> Broker:
    return get_broker()


def _test_database_url() -> str:
    """DATABASE_URL pointing at pytest-django's test database, for worker subprocesses."""
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture
def worker_env(redis_prefix: str, transactional_db: None) -> dict[str, str]:
    """Environment for worker processes: the test database, this test's Redis prefix, fast timings."""
    return {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "JOBQUEUE_REDIS_PREFIX": redis_prefix,
        "JOBQUEUE_IMPORTS": "tests.support.jobtypes",
        "JOBQUEUE_LEASE_SECONDS": "2",
        "JOBQUEUE_REAP_INTERVAL": "0.3",
        "JOBQUEUE_RECONCILE_INTERVAL": "1",
        "JOBQUEUE_KILL_GRACE": "1",
        "JOBQUEUE_SHUTDOWN_GRACE": "5",
        "JOBQUEUE_HEARTBEAT_SECONDS": "1",
        "JOBQUEUE_BACKOFF_BASE": "0.2",
        "JOBQUEUE_BACKOFF_MAX": "1",
        "DJANGO_DEBUG": "1",
        "JOBQUEUE_LOG_FORMAT": "text",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def start_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `manage.py runworker ARGS…` as a real process; every one is killed at teardown."""
    processes = ManagePyProcesses("runworker", worker_env, tmp_path)
    yield processes.start
    processes.kill_all()


@pytest.fixture
def channel_layer(settings, redis_prefix: str) -> str:
    """This test's channel layer, under its Redis prefix: where daphne, workers and services called by
    the test meet (worker subprocesses derive the same prefix from JOBQUEUE_REDIS_PREFIX)."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)  # the project's layer, under this test's prefix
    layers["default"]["CONFIG"]["prefix"] = f"{redis_prefix}:channels"
    settings.CHANNEL_LAYERS = layers
    return redis_prefix
