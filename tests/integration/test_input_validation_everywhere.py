"""Every way a job's JSON comes in refuses the same bad values with the same words.

One table of hostile ``args``/``payload`` values, fed to ``POST /api/jobs/``, ``POST`` and ``PATCH
/api/schedules/``, the schedule admin's add form and ``enqueue()``: each is refused naming the field
and the path inside it (a 400, a form error, ``InvalidJob``), never a 500, never Python's words
(a traceback, the ``sys.set_int_max_str_digits`` hint, a repr), and nothing is recorded. Then the
job endpoint's fields with the wrong JSON types, the ``run_at`` horizon, and the schedule's time
zone and cron rules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import services
from jobs.errors import InvalidJob
from jobs.models import Job
from scheduling.models import Schedule
from tests.support.api import client_for, make_user

pytestmark = pytest.mark.django_db

JOBS_URL = "/api/jobs/"
SCHEDULES_URL = "/api/schedules/"
ADMIN_ADD_URL = "/admin/scheduling/schedule/add/"
INT_RANGE = "integers must be between -2**63 and 2**63-1"

# Python's own words, which must never reach a client: a traceback, the int-digits hint, a repr
# of a list/dict/object, a memory address.
LEAKS = re.compile(r"Traceback|set_int_max_str_digits|\['|\{'|<\w+ object|object at 0x|Exceeds the limit")


def _deep(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


@dataclass(frozen=True)
class Case:
    """A hostile value for one JSON field: its JSON text (as a client sends it), the Python value
    ``enqueue()`` is given, the path the message must name (API spelling) and what it must say."""

    id: str
    field: str  # "args" or "payload"
    text: str
    value: Any
    path: str
    says: str

    @property
    def model_field(self) -> str:
        return "kwargs" if self.field == "payload" else "args"

    @property
    def enqueue_path(self) -> str:  # enqueue's caller calls the payload kwargs
        if self.field == "payload" and self.path:
            return "kwargs" + self.path.removeprefix("payload")
        return self.path


CASES = [
    Case("nul-in-args", "args", '["ok", 1, "a\\u0000b"]', ["ok", 1, "a\x00b"], "args[2]", "NUL"),
    Case("surrogate-in-args", "args", '[1, 2, "\\ud800"]', [1, 2, "\ud800"], "args[2]", "lone surrogates"),
    Case("nul-in-payload", "payload", '{"name": "x\\u0000"}', {"name": "x\x00"}, "payload.name", "NUL"),
    Case(
        "surrogate-in-payload-key",
        "payload",
        '{"a b": {"c": "\\udfff"}}',
        {"a b": {"c": "\udfff"}},
        'payload["a b"].c',
        "lone surrogates",
    ),
    Case("nul-in-payload-key", "payload", '{"k\\u0000": 1}', {"k\x00": 1}, "payload", "NUL"),
    Case("too-deep-args", "args", _deep(40), json.loads(_deep(40)), "args[0]", "nested too deeply"),
    Case("int-beyond-64-bit", "payload", '{"n": 18446744073709551616}', {"n": 2**64}, "payload.n", INT_RANGE),
    Case(
        "int-of-5000-digits",
        "payload",
        '{"n": 1' + "0" * 5000 + "}",
        {"n": 10**4000 * 10**1000},
        "payload.n",
        INT_RANGE,
    ),
    Case("negative-huge-int", "args", "[-1" + "0" * 5000 + "]", [-(10**5000)], "args[0]", INT_RANGE),
    Case("infinite-float", "payload", '{"x": 1e400}', {"x": float("inf")}, "payload.x", "must be finite"),
    Case("payload-is-a-list", "payload", "[1, 2]", [1, 2], "", "Must be a JSON object."),
    Case("args-is-an-object", "args", '{"a": 1}', {"a": 1}, "", "Must be a JSON array."),
]
IDS = [case.id for case in CASES]


def assert_refused(messages: list[str], path: str, says: str) -> None:
    assert messages, "no message"
    assert any(path in message and says in message for message in messages), messages
    for message in messages:
        assert not LEAKS.search(message), message


def counts() -> tuple[int, int]:
    return Job.objects.count(), Schedule.objects.count()


def post_raw(client: APIClient | Client, url: str, text: str, method: str = "POST") -> Any:
    return client.generic(method, url, text, content_type="application/json")


def with_field(prefix: str, case: Case) -> str:
    """``prefix`` (a JSON object's text without its closing brace) plus the case's field, verbatim."""
    return prefix + ", " + json.dumps(case.field) + ": " + case.text + "}"


def job_body(case: Case) -> str:
    return with_field('{"type": "test.ok"', case)


def schedule_body(case: Case) -> str:
    return with_field('{"name": "hostile", "type": "test.ok", "cron": "0 9 * * 1-5", "timezone": "UTC"', case)


@pytest.fixture
def submitter() -> APIClient:
    return client_for(make_user("submitter", "add_job", "view_job"))


@pytest.fixture
def scheduler_editor() -> APIClient:
    return client_for(
        make_user(
            "editor",
            "scheduling.add_schedule",
            "scheduling.change_schedule",
            "scheduling.view_schedule",
        )
    )


# ------------------------------------------------------------------ one table, every entrance


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_post_jobs_refuses_the_value_naming_field_and_path(submitter: APIClient, case: Case) -> None:
    before = counts()
    response = post_raw(submitter, JOBS_URL, job_body(case))
    assert response.status_code == 400, response.content[:500]
    assert_refused(response.json()[case.field], case.path, case.says)
    assert counts() == before


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_post_schedules_refuses_the_value_naming_field_and_path(
    scheduler_editor: APIClient, case: Case
) -> None:
    before = counts()
    response = post_raw(scheduler_editor, SCHEDULES_URL, schedule_body(case))
    assert response.status_code == 400, response.content[:500]
    assert_refused(response.json()[case.field], case.path, case.says)
    assert counts() == before


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_patch_schedules_refuses_the_value_and_keeps_the_schedule(
    scheduler_editor: APIClient, case: Case
) -> None:
    schedule = Schedule.objects.create(
        name="kept", type="test.ok", kwargs={"value": 1}, cron="0 9 * * 1-5", timezone="UTC"
    )
    before = counts()
    text = "{" + json.dumps(case.field) + ": " + case.text + "}"
    response = post_raw(scheduler_editor, f"{SCHEDULES_URL}{schedule.pk}/", text, method="PATCH")
    assert response.status_code == 400, response.content[:500]
    assert_refused(response.json()[case.field], case.path, case.says)
    assert counts() == before
    schedule.refresh_from_db()
    assert (schedule.args, schedule.kwargs) == ([], {"value": 1})


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_schedule_admin_form_shows_the_problem_on_the_field(admin_client: Client, case: Case) -> None:
    form = {
        "name": "hostile",
        "enabled": "on",
        "type": "test.ok",
        "kwargs": "{}",
        "args": "[]",
        "queue": "",
        "priority": "",
        "max_attempts": "",
        "cron": "0 9 * * 1-5",
        "timezone": "UTC",
        "misfire_policy": "run_once",
        "catch_up_limit": "10",
        case.model_field: case.text,
    }
    before = counts()
    response = admin_client.post(ADMIN_ADD_URL, form)
    assert response.status_code == 200, response.content[:500]
    errors = response.context["adminform"].form.errors
    assert_refused(errors[case.model_field], case.path, case.says)
    assert counts() == before


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_enqueue_raises_invalid_job_naming_field_and_path(case: Case) -> None:
    before = counts()
    options = {"args": case.value} if case.field == "args" else {"kwargs": case.value}
    with pytest.raises(InvalidJob) as excinfo:
        services.enqueue("test.ok", **options)
    assert_refused(excinfo.value.message_dict[case.model_field], case.enqueue_path, case.says)
    assert counts() == before


def test_enqueue_refuses_values_that_are_not_json() -> None:
    with pytest.raises(InvalidJob) as excinfo:
        services.enqueue("noop", kwargs={"when": datetime.now(UTC), "tags": {1, 2}, "nested": {1: "a"}})
    messages = excinfo.value.message_dict["kwargs"]
    assert_refused(messages, "kwargs.when", "a value of type datetime is not JSON")
    assert_refused(messages, "kwargs.tags", "a value of type set is not JSON")
    assert_refused(messages, "kwargs.nested", "object keys must be strings")
    assert not Job.objects.exists()


def test_many_problems_are_capped_with_a_count(submitter: APIClient) -> None:
    body = {"type": "test.ok", "args": ["\x00"] * 50}
    response = post_raw(submitter, JOBS_URL, json.dumps(body))
    messages = response.json()["args"]
    assert response.status_code == 400
    assert len(messages) == 11
    assert messages[0].startswith("args[0]: ") and messages[-1] == "args: … and 40 more problems."


def test_json_parse_errors_never_show_python_words(submitter: APIClient, scheduler_editor: APIClient) -> None:
    for client, url in ((submitter, JOBS_URL), (scheduler_editor, SCHEDULES_URL)):
        for text in ('{"type": "test.ok", "args": [NaN]}', "[" * 100_000, '{"type": "test.ok",'):
            response = post_raw(client, url, text)
            assert response.status_code == 400, (url, text[:40], response.content[:300])
            detail = response.json()["detail"]
            assert detail.startswith("JSON parse error"), detail
            assert not LEAKS.search(detail), detail


# ------------------------------------------------------------------ POST /api/jobs/: wrong JSON types


WRONG_TYPES = {
    "list": ["noop"],
    "object": {"a": 1},
    "bool": True,
    "huge-int": 10**30,
    "float": 1.5,
    "numeric-string": "5",
}

FIELD_WORDS = {
    "type": "Must be a string naming a registered job type",
    "payload": "Must be a JSON object.",
    "args": "Must be a JSON array.",
    "queue": "Must be 1-64 characters",
    "priority": None,  # DRF's integer words, or the range for a huge integer
    "max_attempts": None,
    "run_at": "Must be an ISO 8601 date-time",
    "delay": None,
    "timeout": None,
}
INTEGER_FIELDS = {"priority", "max_attempts"}
NUMBER_FIELDS = {"delay", "timeout"}


def _wrong_type_cases() -> list[tuple[str, str, Any]]:
    cases = []
    for field in FIELD_WORDS:
        for kind, value in WRONG_TYPES.items():
            right_type = {"payload": "object", "args": "list"}.get(
                field, "float" if field in NUMBER_FIELDS else ""
            )
            if kind == right_type or (kind == "numeric-string" and field in ("type", "queue")):
                continue  # what the field takes
            cases.append((field, kind, value))
        if field in ("type", "payload", "args"):
            cases.append((field, "null", None))
        cases.append((field, "5000-digit-int", "1" + "0" * 5000))
    return cases


@pytest.mark.parametrize(("field", "kind", "value"), _wrong_type_cases())
def test_each_job_field_with_a_wrong_json_type_is_a_400_naming_it(
    submitter: APIClient, field: str, kind: str, value: Any
) -> None:
    body = {"type": "test.ok"}
    encoded = value if kind == "5000-digit-int" else json.dumps(value)
    text = (
        json.dumps(body)[:-1] + f', "{field}": {encoded}}}' if field != "type" else f'{{"type": {encoded}}}'
    )
    response = post_raw(submitter, JOBS_URL, text)
    assert response.status_code == 400, response.content[:500]
    messages = response.json()[field]
    for message in messages:
        assert not LEAKS.search(message), message
    if kind == "null":
        assert messages == ["This field may not be null."]
    elif FIELD_WORDS[field] is not None:
        assert any(FIELD_WORDS[field] in message for message in messages), messages
    elif kind in ("huge-int", "5000-digit-int"):
        assert any("less than or equal to" in message for message in messages), messages
    else:
        assert messages in (["A valid integer is required."], ["A valid number is required."]), messages
    assert not Job.objects.exists()


def test_an_unknown_type_string_is_quoted_without_python_repr(submitter: APIClient) -> None:
    response = post_raw(submitter, JOBS_URL, '{"type": "no\\u0000such"}')
    (message,) = response.json()["type"]
    assert message.startswith('Unknown job type "no\\u0000such". Registered types: ')


# ------------------------------------------------------------------ run_at: the same horizon as delay


def test_run_at_beyond_the_delay_horizon_is_refused_in_enqueue() -> None:
    with pytest.raises(InvalidJob) as excinfo:
        services.enqueue("noop", run_at=timezone.now() + timedelta(days=367))
    assert "at most 366 days from now" in excinfo.value.message_dict["run_at"][0]
    with pytest.raises(InvalidJob):
        services.enqueue("noop", run_at=datetime(9999, 12, 31, tzinfo=UTC))
    assert not Job.objects.exists()


def test_run_at_within_the_horizon_is_accepted() -> None:
    job = services.enqueue("noop", run_at=timezone.now() + timedelta(days=365))
    assert job.status == "scheduled"


@pytest.mark.parametrize("run_at", ["9999-12-31T23:59:59+00:00", "2999-01-01T00:00:00Z"])
def test_run_at_beyond_the_horizon_is_a_400_in_the_api(submitter: APIClient, run_at: str) -> None:
    response = post_raw(submitter, JOBS_URL, json.dumps({"type": "test.ok", "run_at": run_at}))
    assert response.status_code == 400
    (message,) = response.json()["run_at"]
    assert "at most 366 days from now" in message
    assert not Job.objects.exists()


def test_delay_beyond_the_horizon_names_the_same_bound(submitter: APIClient) -> None:
    response = post_raw(submitter, JOBS_URL, json.dumps({"type": "test.ok", "delay": 367 * 86400}))
    assert response.status_code == 400
    assert "less than or equal to 31622400" in response.json()["delay"][0]
    with pytest.raises(InvalidJob, match="366 days"):
        services.enqueue("noop", delay=367 * 86400)


# ------------------------------------------------------------------ schedules: time zones and cron syntax


@pytest.mark.parametrize(
    "zone", ["localtime", "EST5EDT", "EST", "US/Eastern", "GB", "Zulu", "posixrules", "Factory", "../UTC"]
)
def test_schedules_refuse_time_zones_that_are_not_iana_area_location_names(
    scheduler_editor: APIClient, zone: str
) -> None:
    response = scheduler_editor.post(
        SCHEDULES_URL,
        {"name": "z", "type": "test.ok", "cron": "0 9 * * *", "timezone": zone},
        format="json",
    )
    assert response.status_code == 400, response.content[:300]
    (message,) = response.json()["timezone"]
    assert "IANA" in message and not LEAKS.search(message)
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
def test_schedules_accept_iana_names(scheduler_editor: APIClient, zone: str) -> None:
    response = scheduler_editor.post(
        SCHEDULES_URL,
        {"name": "z", "type": "test.ok", "cron": "0 9 * * *", "timezone": zone},
        format="json",
    )
    assert response.status_code == 201, response.content[:300]


def test_a_schedule_saved_with_a_legacy_zone_still_fires() -> None:
    """Stored before the rule: it keeps its timetable (only new input is held to the rule)."""
    schedule = Schedule(name="old", type="test.ok", cron="0 9 * * *", timezone="US/Eastern")
    schedule.save()
    assert schedule.next_run_at is not None


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("@reboot", "Unknown alias '@reboot'"),
        ("0 0 L * *", "The day-of-month field 'L' is invalid"),
        ("0 0 15W * *", "The day-of-month field '15W' is invalid"),
        ("0 0 * * 5L", "The day-of-week field '5L' is invalid"),
        ("0 0 * * 1#2", "The day-of-week field '1#2' is invalid"),
        ("0 0 ? * *", "The day-of-month field '?' is invalid"),
        ("0 0 * * * 2030", "exactly 5 fields"),
        ("*/5 * * * * *", "seconds and year fields are not supported"),
        ("H * * * *", "H (hashed values)"),
    ],
)
def test_schedules_refuse_cron_extensions_the_help_text_does_not_name(
    scheduler_editor: APIClient, expression: str, says: str
) -> None:
    response = scheduler_editor.post(
        SCHEDULES_URL,
        {"name": "c", "type": "test.ok", "cron": expression, "timezone": "UTC"},
        format="json",
    )
    assert response.status_code == 400
    (message,) = response.json()["cron"]
    assert says in message
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    "expression",
    [
        "0 9 * * 1-5",
        "*/15 * * * *",
        "0 0 1,15 * *",
        "30 2 1 jan-mar sun",
        "0-30/10 8-18/2 * * mon-fri",
        "@daily",
    ],
)
def test_schedules_accept_standard_cron(scheduler_editor: APIClient, expression: str) -> None:
    response = scheduler_editor.post(
        SCHEDULES_URL,
        {"name": "c", "type": "test.ok", "cron": expression, "timezone": "UTC"},
        format="json",
    )
    assert response.status_code == 201, response.content[:300]


@pytest.mark.parametrize("field", ["name", "type", "queue", "cron", "timezone"])
def test_schedule_text_fields_refuse_lone_surrogates(scheduler_editor: APIClient, field: str) -> None:
    data = {"name": "s", "type": "test.ok", "cron": "0 9 * * *", "timezone": "UTC", field: "x\ud800"}
    response = post_raw(scheduler_editor, SCHEDULES_URL, json.dumps(data))
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 100_000, "nested too deeply"),
        ('{"x": NaN}', "NaN is not valid JSON"),
        ("{", "Enter valid JSON"),
    ],
)
def test_the_schedule_admin_form_refuses_unparseable_json_on_the_field(
    admin_client: Client, text: str, says: str
) -> None:
    form = {
        "name": "hostile",
        "enabled": "on",
        "type": "test.ok",
        "kwargs": text,
        "args": "[]",
        "cron": "0 9 * * 1-5",
        "timezone": "UTC",
        "misfire_policy": "run_once",
        "catch_up_limit": "10",
    }
    response = admin_client.post(ADMIN_ADD_URL, form)
    assert response.status_code == 200
    (message,) = response.context["adminform"].form.errors["kwargs"]
    assert says in message and not LEAKS.search(message), message
    assert not Schedule.objects.exists()
