"""django.tasks tasks reach the API only when declared ``api=True``; a client never names an import path."""

from __future__ import annotations

import pytest

import tests.support.tasks_fixtures  # noqa: F401  (declares the test tasks in this process)
from jobs.models import Job
from tests.support.api import operator

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_task_declared_api_true_can_be_submitted_and_is_listed(broker):
    client = operator()
    response = client.post(
        "/api/jobs/", {"type": "tests.support.tasks_fixtures.exposed", "payload": {"value": 3}}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Job.objects.get(pk=response.json()["id"]).type == "tests.support.tasks_fixtures.exposed"
    names = [entry["name"] for entry in client.get("/api/job-types/").json()]
    assert "tests.support.tasks_fixtures.exposed" in names and "tests.support.tasks_fixtures.add" not in names


@pytest.mark.parametrize("name", ["tests.support.tasks_fixtures.add", "os.system", "subprocess.run"])
def test_tasks_without_api_true_and_arbitrary_import_paths_are_rejected(broker, name):
    response = operator().post("/api/jobs/", {"type": name, "payload": {}}, format="json")
    assert response.status_code == 400
    assert f'Unknown job type "{name}"' in response.json()["type"][0]
    assert not Job.objects.exists()
