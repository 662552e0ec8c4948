"""Cron arithmetic without a database: validation messages, fire times, DST, misfire selection."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from jobqueue_site.env import parse_durations
from scheduling import cron
from scheduling.firing import idempotency_key, select_fire_times
from scheduling.models import MisfirePolicy


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def fire_times(expression: str, zone: str, after: datetime, count: int) -> list[str]:
    return [
        moment.strftime("%Y-%m-%dT%H:%MZ") for moment in cron.next_fire_times(expression, zone, after, count)
    ]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "expression", ["0 9 * * 1-5", "*/15 * * * *", "0 0 1,15 * *", "30 2 1 jan-mar sun", "@daily", "@HOURLY"]
)
def test_five_field_expressions_and_aliases_are_accepted(expression: str) -> None:
    assert cron.validate_cron(expression) == cron.normalize(expression)


def test_aliases_are_stored_lower_case_and_expand_to_five_fields() -> None:
    assert cron.normalize("  @Weekly ") == "@weekly"
    assert cron.expand("@weekly") == "0 0 * * 0"
    assert cron.expand(" 0   9 * *  1-5 ") == "0 9 * * 1-5"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * * * *", "exactly 5 fields"),
        ("0 0 * * * * 2030", "seconds and year fields are not supported"),
        ("0 9 * *", "has 4"),
        ("61 * * * *", "The minute field '61' is invalid: allowed values are 0-59"),
        ("0 24 * * *", "The hour field '24' is invalid"),
        ("0 0 32 * *", "The day-of-month field '32' is invalid"),
        ("0 0 * 13 *", "The month field '13' is invalid"),
        ("0 0 * * 8", "The day-of-week field '8' is invalid"),
        ("@reboot", "Unknown alias '@reboot'"),
        ("H * * * *", "H (hashed values)"),
        ("R * * * *", "R (random values)"),
        ("0 0 30 2 *", "never fires"),
        ("", "Enter a cron expression"),
    ],
)
def test_invalid_cron_is_rejected_with_a_message_naming_the_problem(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError) as excinfo:
        cron.validate_cron(expression)
    assert message in excinfo.value.messages[0]


def test_unknown_time_zone_is_rejected_with_close_matches() -> None:
    with pytest.raises(cron.CronError) as excinfo:
        cron.validate_timezone("Europe/Berln")
    assert "Unknown time zone 'Europe/Berln'" in excinfo.value.messages[0]
    assert "'Europe/Berlin'" in excinfo.value.messages[0]


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus_Mons", "../../etc/passwd", " UTC", "America", "posixrules"]
)
def test_invalid_time_zone_names_are_rejected(name: str) -> None:
    with pytest.raises(cron.CronError):
        cron.validate_timezone(name)


# ---------------------------------------------------------------- fire times and words


def test_next_fire_is_strictly_after_and_in_the_schedules_zone() -> None:
    friday_noon = utc(2025, 1, 10, 12, 0)
    # 09:00 Berlin in winter is 08:00 UTC; the next weekday after Friday noon is Monday.
    assert cron.next_fire("0 9 * * 1-5", "Europe/Berlin", friday_noon) == utc(2025, 1, 13, 8, 0)
    assert cron.next_fire("0 9 * * *", "UTC", utc(2025, 1, 1, 9, 0)) == utc(2025, 1, 2, 9, 0)


def test_cron_is_described_in_words() -> None:
    assert cron.describe("0 9 * * 1-5") == "At 09:00, Monday through Friday"
    assert cron.describe("*/15 * * * *") == "Every 15 minutes"
    assert cron.describe("@daily") == "At 00:00 (@daily)"
    assert cron.describe("not cron") == "not cron"


# ---------------------------------------------------------------- daylight saving time


def test_berlin_spring_forward_moves_a_fire_time_in_the_skipped_hour_to_three_oclock() -> None:
    # 2025-03-30: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    assert fire_times("30 2 * * *", "Europe/Berlin", utc(2025, 3, 28, 12), 3) == [
        "2025-03-29T01:30Z",  # 02:30 CET
        "2025-03-30T01:00Z",  # 03:00 CEST, the first instant after the gap
        "2025-03-31T00:30Z",  # 02:30 CEST
    ]


def test_berlin_spring_forward_hourly_schedule_has_no_fire_in_the_skipped_hour() -> None:
    assert fire_times("0 * * * *", "Europe/Berlin", utc(2025, 3, 29, 23, 30), 3) == [
        "2025-03-30T00:00Z",  # 01:00 CET
        "2025-03-30T01:00Z",  # 03:00 CEST
        "2025-03-30T02:00Z",  # 04:00 CEST
    ]


def test_berlin_fall_back_fires_a_time_in_the_repeated_hour_once_per_offset() -> None:
    # 2025-10-26: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    assert fire_times("30 2 * * *", "Europe/Berlin", utc(2025, 10, 24, 12), 4) == [
        "2025-10-25T00:30Z",
        "2025-10-26T00:30Z",  # 02:30 CEST
        "2025-10-26T01:30Z",  # 02:30 CET
        "2025-10-27T01:30Z",
    ]


def test_new_york_spring_forward_moves_a_fire_time_in_the_skipped_hour() -> None:
    # 2025-03-09: 02:00 EST jumps to 03:00 EDT.
    assert fire_times("30 2 * * *", "America/New_York", utc(2025, 3, 7, 12), 3) == [
        "2025-03-08T07:30Z",  # 02:30 EST
        "2025-03-09T07:00Z",  # 03:00 EDT
        "2025-03-10T06:30Z",  # 02:30 EDT
    ]


def test_new_york_fall_back_fires_a_time_in_the_repeated_hour_once_per_offset() -> None:
    # 2025-11-02: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    assert fire_times("30 1 * * *", "America/New_York", utc(2025, 10, 31, 12), 4) == [
        "2025-11-01T05:30Z",
        "2025-11-02T05:30Z",  # 01:30 EDT
        "2025-11-02T06:30Z",  # 01:30 EST
        "2025-11-03T06:30Z",
    ]


def test_daily_midnight_keeps_local_midnight_across_the_change() -> None:
    assert fire_times("0 0 * * *", "America/New_York", utc(2025, 11, 1, 12), 2) == [
        "2025-11-02T04:00Z",  # 00:00 EDT
        "2025-11-03T05:00Z",  # 00:00 EST
    ]


# ---------------------------------------------------------------- catch-up after downtime


def test_due_times_lists_every_missed_fire_time_up_to_now() -> None:
    due, total = cron.due_times("0 * * * *", "UTC", utc(2025, 6, 1, 10), utc(2025, 6, 1, 15, 30), keep=10)
    assert [d.hour for d in due] == [10, 11, 12, 13, 14, 15]
    assert total == 6


def test_due_times_keeps_only_the_latest_ones() -> None:
    due, total = cron.due_times("0 * * * *", "UTC", utc(2025, 6, 1, 10), utc(2025, 6, 1, 15, 30), keep=2)
    assert [d.hour for d in due] == [14, 15]
    assert total == 6


def test_a_long_outage_of_a_per_minute_schedule_is_walked_in_bounded_time() -> None:
    now = utc(2025, 6, 1, 12, 0, 30)
    started = time.monotonic()
    due, total = cron.due_times("* * * * *", "UTC", now - timedelta(days=60), now, keep=1)
    assert time.monotonic() - started < 5
    assert due == [utc(2025, 6, 1, 12, 0)]
    assert total >= cron.MAX_SCAN


@pytest.mark.parametrize(
    ("policy", "limit", "expected"),
    [
        (MisfirePolicy.RUN_ONCE, 10, [15]),
        (MisfirePolicy.SKIP, 10, []),
        (MisfirePolicy.RUN_ALL, 3, [13, 14, 15]),
        (MisfirePolicy.RUN_ALL, 10, [10, 11, 12, 13, 14, 15]),
    ],
)
def test_misfire_policy_selects_what_to_fire(policy: str, limit: int, expected: list[int]) -> None:
    due = [utc(2025, 6, 1, hour) for hour in range(10, 16)]
    chosen = select_fire_times(due, utc(2025, 6, 1, 15, 30), policy, timedelta(seconds=60), limit)
    assert [d.hour for d in chosen] == expected


def test_skip_policy_still_fires_a_time_within_the_grace() -> None:
    due = [utc(2025, 6, 1, 15)]
    on_time = select_fire_times(due, utc(2025, 6, 1, 15, 0, 30), MisfirePolicy.SKIP, timedelta(seconds=60), 1)
    late = select_fire_times(due, utc(2025, 6, 1, 15, 1, 30), MisfirePolicy.SKIP, timedelta(seconds=60), 1)
    assert on_time == due and late == []


def test_idempotency_key_names_the_schedule_and_the_fire_time_in_utc() -> None:
    fire = datetime(2025, 3, 30, 3, 0, tzinfo=cron.validate_timezone("Europe/Berlin"))
    assert idempotency_key(7, fire) == "schedule:7:2025-03-30T01:00:00Z"


# ---------------------------------------------------------------- JOBQUEUE_RETENTION syntax


def test_retention_durations_parse_with_units() -> None:
    assert parse_durations("succeeded=7d, failed=30d,cancelled=12h,x=90", "R") == {
        "succeeded": 7 * 86400,
        "failed": 30 * 86400,
        "cancelled": 12 * 3600,
        "x": 90,
    }
    assert parse_durations("", "R") == {}


@pytest.mark.parametrize("raw", ["succeeded", "succeeded=", "succeeded=7y", "failed=-1d", "a=1d,a=2d", "=3d"])
def test_bad_retention_is_improperly_configured(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse_durations(raw, "JOBQUEUE_RETENTION")
    assert "JOBQUEUE_RETENTION" in str(excinfo.value)
