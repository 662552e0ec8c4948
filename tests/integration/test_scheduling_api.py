"""The schedules API: each endpoint, bad input as field errors, and who may do what."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from jobs.models import Job
from scheduling.models import Schedule

pytestmark = pytest.mark.django_db

URL = "/api/schedules/"
NOW = datetime(2025, 6, 2, 6, 0, tzinfo=UTC)  # a Monday, 08:00 in Berlin


def client_for(django_user_model, *perms: str) -> APIClient:
    user = django_user_model.objects.create_user(
        username=f"u{len(perms)}-{'-'.join(perms)}"[:150],
        password=None,  # no hashing: fast
    )
    for codename in perms:
        user.user_permissions.add(
            Permission.objects.get(codename=codename, content_type__app_label="scheduling")
        )
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def editor(django_user_model) -> APIClient:
    return client_for(
        django_user_model, "add_schedule", "change_schedule", "delete_schedule", "view_schedule"
    )


@pytest.fixture
def reader(django_user_model) -> APIClient:
    return client_for(django_user_model, "view_schedule")


def body(**overrides: object) -> dict:
    data = {
        "name": "weekday report",
        "type": "test.ok",
        "payload": {"value": 1},
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Berlin",
    }
    data.update(overrides)
    return data


def create(client: APIClient, **overrides: object) -> dict:
    with time_machine.travel(NOW, tick=False):
        response = client.post(URL, body(**overrides), format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_create_returns_the_schedule_with_its_timetable_in_words(editor: APIClient) -> None:
    data = create(editor)
    assert data["cron_description"] == "At 09:00, Monday through Friday"
    assert data["next_run_at"].startswith("2025-06-02T07:00:00")  # 09:00 CEST
    assert data["next_fire_times"][0] == "2025-06-02T09:00:00+02:00"
    assert len(data["next_fire_times"]) == 5
    assert (data["payload"], data["args"], data["enabled"], data["misfire_policy"]) == (
        {"value": 1},
        [],
        True,
        "run_once",
    )


def test_time_zone_defaults_to_the_project_time_zone(editor: APIClient, settings) -> None:
    settings.TIME_ZONE = "America/New_York"
    payload = body()
    del payload["timezone"]
    response = editor.post(URL, payload, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["timezone"] == "America/New_York"


def test_list_and_detail(editor: APIClient, reader: APIClient) -> None:
    created = create(editor)
    listed = reader.get(URL)
    assert listed.status_code == 200
    assert listed.json()["count"] == 1
    assert [s["name"] for s in listed.json()["results"]] == ["weekday report"]
    detail = reader.get(f"{URL}{created['id']}/")
    assert detail.status_code == 200 and detail.json()["id"] == created["id"]


def test_updating_the_cron_recomputes_next_run_at(editor: APIClient) -> None:
    created = create(editor)
    with time_machine.travel(NOW, tick=False):
        response = editor.patch(
            f"{URL}{created['id']}/", {"cron": "30 8 * * *", "timezone": "UTC"}, format="json"
        )
    assert response.status_code == 200, response.json()
    assert response.json()["next_run_at"].startswith("2025-06-02T08:30:00")
    assert response.json()["cron_description"] == "At 08:30"


def test_delete(editor: APIClient) -> None:
    created = create(editor)
    assert editor.delete(f"{URL}{created['id']}/").status_code == 204
    assert not Schedule.objects.exists()


def test_run_enqueues_the_job_now(editor: APIClient) -> None:
    created = create(editor)
    response = editor.post(f"{URL}{created['id']}/run/")
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["job"])
    assert (job.type, job.kwargs, job.status) == ("test.ok", {"value": 1}, "queued")
    assert response.json()["schedule"]["last_job"] == str(job.pk)


def test_pause_and_resume(editor: APIClient) -> None:
    created = create(editor)
    paused = editor.post(f"{URL}{created['id']}/pause/")
    assert paused.status_code == 200
    assert paused.json()["enabled"] is False and paused.json()["next_run_at"] is None
    with time_machine.travel(NOW, tick=False):
        resumed = editor.post(f"{URL}{created['id']}/resume/")
    assert resumed.status_code == 200
    assert resumed.json()["enabled"] is True
    assert resumed.json()["next_run_at"].startswith("2025-06-02T07:00:00")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"cron": "61 * * * *"}, "cron", "The minute field '61' is invalid"),
        ({"cron": "0 0 9 * * 1-5"}, "cron", "exactly 5 fields"),
        ({"cron": "@reboot"}, "cron", "Unknown alias"),
        ({"timezone": "Europe/Berln"}, "timezone", "Unknown time zone 'Europe/Berln'"),
        ({"type": "no.such.type"}, "type", "unknown job type 'no.such.type'"),
        ({"payload": [1, 2]}, "payload", "Must be a JSON object."),
        ({"payload": {"nope": 1}}, "payload", "does not accept these arguments"),
        ({"args": {"a": 1}}, "args", "Must be a JSON array."),
        ({"priority": 101}, "priority", "-100"),
        ({"queue": "bad queue!"}, "queue", "letters, digits"),
        ({"misfire_policy": "sometimes"}, "misfire_policy", "not a valid choice"),
        ({"catch_up_limit": 0}, "catch_up_limit", "greater than or equal to 1"),
        ({"catch_up_limit": 5000}, "catch_up_limit", "less than or equal to 1000"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    editor: APIClient, overrides: dict, field: str, message: str
) -> None:
    response = editor.post(URL, body(**overrides), format="json")
    assert response.status_code == 400
    errors = response.json()
    assert field in errors, errors
    assert any(message in text for text in errors[field]), errors[field]
    assert not Schedule.objects.exists()


def test_a_duplicate_name_is_rejected(editor: APIClient) -> None:
    create(editor)
    response = editor.post(URL, body(), format="json")
    assert response.status_code == 400 and "name" in response.json()


def test_an_invalid_cron_in_an_update_is_rejected(editor: APIClient) -> None:
    created = create(editor)
    response = editor.patch(f"{URL}{created['id']}/", {"cron": "* * * * * *"}, format="json")
    assert response.status_code == 400 and "cron" in response.json()
    assert Schedule.objects.get().cron == "0 9 * * 1-5"


def test_unauthenticated_requests_are_refused() -> None:
    anonymous = APIClient()
    assert anonymous.get(URL).status_code in (401, 403)
    assert anonymous.post(URL, body(), format="json").status_code in (401, 403)


def test_reading_needs_view_schedule_and_writes_need_model_permissions(
    editor: APIClient, reader: APIClient, django_user_model
) -> None:
    created = create(editor)
    detail = f"{URL}{created['id']}/"
    assert reader.get(detail).status_code == 200
    signed_in_only = client_for(django_user_model)
    assert signed_in_only.get(URL).status_code == 403
    assert signed_in_only.get(detail).status_code == 403
    assert reader.post(URL, body(name="other"), format="json").status_code == 403
    assert reader.patch(detail, {"enabled": False}, format="json").status_code == 403
    assert reader.delete(detail).status_code == 403
    for action in ("run", "pause", "resume"):
        assert reader.post(f"{detail}{action}/").status_code == 403
    assert not Job.objects.exists()
    assert Schedule.objects.get().enabled is True


def test_running_a_schedule_whose_type_is_gone_is_a_400(editor: APIClient) -> None:
    created = create(editor)
    Schedule.objects.filter(pk=created["id"]).update(type="gone.type")
    response = editor.post(f"{URL}{created['id']}/run/")
    assert response.status_code == 400
    assert "type" in response.json()
    assert not Job.objects.exists()
