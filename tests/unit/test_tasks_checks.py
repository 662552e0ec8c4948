"""System checks for the django.tasks backend: the TASKS entry and every declared task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core import checks
from django.tasks import task

from jobs import registry
from jobs.tasks_backend import lookup
from jobs.tasks_backend.backend import JobQueueBackend
from jobs.tasks_backend.checks import check_declared_tasks
from tests.support import tasks_fixtures as fx


def _ids(messages: list[checks.CheckMessage]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for message in messages:
        found.setdefault(message.id, []).append(str(message.obj))
    return found


@pytest.fixture
def forget_declared() -> Iterator[None]:
    """Tasks a test declares (and types it registers) must not leak into other tests' checks."""
    declared = lookup.declared_tasks()
    yield
    for path in set(lookup.declared_tasks()) - set(declared):
        lookup._declared.pop(path, None)


def test_backend_check_reports_bad_queue_names_options_and_unserved_queues(settings):
    settings.JOBQUEUE_QUEUES = ["default"]
    backend = JobQueueBackend(
        "extra",
        {
            "BACKEND": "jobs.backends.JobQueueBackend",
            "QUEUES": ["default", "bulk", "no spaces!"],
            "OPTIONS": {"x": 1},
        },
    )

    messages = {m.id: m for m in backend.check()}

    assert set(messages) == {"jobqueue.E101", "jobqueue.E102", "jobqueue.W101"}
    assert "'no spaces!'" in messages["jobqueue.E101"].msg
    assert "['x']" in messages["jobqueue.E102"].msg
    assert "['bulk', 'no spaces!']" in messages["jobqueue.W101"].msg


def test_the_configured_backend_passes_its_checks():
    assert JobQueueBackend("default", {"QUEUES": ["high", "default", "low"]}).check() == []


def test_declared_tasks_pass_the_checks_when_workers_can_find_and_serve_them():
    assert fx.add.module_path in lookup.declared_tasks()
    assert check_declared_tasks() == []
    assert [m for m in checks.run_checks(tags=["jobqueue"]) if m.id.startswith("jobqueue.")] == []


def test_a_task_workers_cannot_find_by_its_module_path_is_an_error(forget_declared):
    task()(fx.plain_function)  # a Task object that no module attribute holds under its own name

    assert _ids(check_declared_tasks()) == {"jobqueue.E001": ["tests.support.tasks_fixtures.plain_function"]}


def test_a_task_whose_name_a_job_type_took_is_an_error():
    path = fx.echo.module_path
    registry.unregister(path)
    registry.register(registry.JobType(name=path, func=fx.plain_function))
    try:
        assert _ids(check_declared_tasks()) == {"jobqueue.E002": [path]}
    finally:
        registry.unregister(path)


def test_a_task_on_a_queue_no_worker_serves_by_default_is_a_warning(settings):
    settings.JOBQUEUE_QUEUES = ["high", "default"]

    assert _ids(check_declared_tasks()) == {"jobqueue.W001": [fx.echo.module_path]}
