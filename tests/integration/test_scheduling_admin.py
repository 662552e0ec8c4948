"""The schedules admin: validation messages on the form, what the pages show, and the actions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from jobs.models import Job
from scheduling.models import Schedule

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/scheduling/schedule/"
NOW = datetime(2025, 6, 2, 6, 0, tzinfo=UTC)  # Monday 08:00 in Berlin


def form(**overrides: object) -> dict:
    data = {
        "name": "weekday report",
        "enabled": "on",
        "type": "test.ok",
        "kwargs": '{"value": 1}',
        "args": "[]",
        "queue": "",
        "priority": "",
        "max_attempts": "",
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Berlin",
        "misfire_policy": "run_once",
        "catch_up_limit": "10",
    }
    data.update(overrides)
    return data


def make(**fields: object) -> Schedule:
    fields.setdefault("name", "weekday report")
    fields.setdefault("type", "test.ok")
    fields.setdefault("kwargs", {"value": 1})
    fields.setdefault("cron", "0 9 * * 1-5")
    fields.setdefault("timezone", "Europe/Berlin")
    with time_machine.travel(NOW, tick=False):
        return Schedule.objects.create(**fields)


def test_adding_a_valid_schedule_computes_its_next_run(admin_client: Client) -> None:
    with time_machine.travel(NOW, tick=False):
        response = admin_client.post(f"{ADD_URL}add/", form())
    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = Schedule.objects.get()
    assert schedule.next_run_at == datetime(2025, 6, 2, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cron": "61 * * * *"}, "The minute field &#x27;61&#x27; is invalid"),
        ({"cron": "0 0 9 * * 1-5"}, "exactly 5 fields"),
        ({"timezone": "Europe/Berln"}, "Unknown time zone &#x27;Europe/Berln&#x27;"),
        ({"type": "no.such.type"}, "unknown job type &#x27;no.such.type&#x27;"),
        ({"kwargs": '{"nope": 1}'}, "does not accept these arguments"),
    ],
)
def test_invalid_input_is_shown_on_the_form(admin_client: Client, overrides: dict, message: str) -> None:
    response = admin_client.post(f"{ADD_URL}add/", form(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Schedule.objects.exists()


def test_the_change_page_shows_cron_in_words_and_the_next_five_fire_times_in_the_zone(
    admin_client: Client,
) -> None:
    schedule = make()
    with time_machine.travel(NOW, tick=False):
        page = admin_client.get(f"{ADD_URL}{schedule.pk}/change/").content.decode()
    assert "At 09:00, Monday through Friday" in page
    for day in range(2, 7):  # Monday to Friday; the weekend is skipped
        assert f"2025-06-0{day} 09:00 CEST" in page
    assert page.count("09:00 CEST</li>") == 5
    assert "Run now" in page and "Disable" in page


def test_the_list_shows_the_last_run_and_links_its_job(admin_client: Client) -> None:
    schedule = make()
    admin_client.post(reverse("admin:scheduling_schedule_run", args=[schedule.pk]))
    job = Job.objects.get()
    page = admin_client.get(ADD_URL).content.decode()
    assert "At 09:00, Monday through Friday" in page
    assert str(job.pk)[:8] in page


def test_the_run_now_button_enqueues_the_job(admin_client: Client) -> None:
    schedule = make()
    url = reverse("admin:scheduling_schedule_run", args=[schedule.pk])
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url)
    assert response.status_code == 302
    job = Job.objects.get()
    assert (job.type, job.kwargs) == ("test.ok", {"value": 1})
    schedule.refresh_from_db()
    assert schedule.last_job_id == job.pk


def test_the_disable_and_enable_buttons(admin_client: Client) -> None:
    schedule = make()
    admin_client.post(reverse("admin:scheduling_schedule_disable", args=[schedule.pk]))
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_run_at is None
    with time_machine.travel(NOW, tick=False):
        admin_client.post(reverse("admin:scheduling_schedule_enable", args=[schedule.pk]))
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_run_at == datetime(2025, 6, 2, 7, 0, tzinfo=UTC)


def test_list_actions_enable_disable_and_run_now(admin_client: Client) -> None:
    first, second = make(name="a"), make(name="b")
    ids = [first.pk, second.pk]
    admin_client.post(ADD_URL, {"action": "disable_schedules", "_selected_action": ids})
    assert not Schedule.objects.filter(enabled=True).exists()
    assert not Schedule.objects.filter(next_run_at__isnull=False).exists()
    admin_client.post(ADD_URL, {"action": "enable_schedules", "_selected_action": ids})
    assert Schedule.objects.filter(enabled=True, next_run_at__isnull=False).count() == 2
    admin_client.post(ADD_URL, {"action": "run_schedules_now", "_selected_action": ids})
    assert Job.objects.count() == 2


def test_a_user_without_change_permission_cannot_run_a_schedule(django_user_model) -> None:
    schedule = make()
    viewer = django_user_model.objects.create_user(username="viewer", password=None, is_staff=True)
    client = Client()
    client.force_login(viewer)
    response = client.post(reverse("admin:scheduling_schedule_run", args=[schedule.pk]))
    assert response.status_code == 403
    assert not Job.objects.exists()
