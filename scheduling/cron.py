"""Cron expressions: validation, fire times in a schedule's time zone, and cron in words.

Pure functions (no database, no Redis), so the scheduler's arithmetic can be tested under a
controlled clock. Fire times are computed by croniter on *aware* datetimes in the schedule's
time zone and returned in UTC; docs/scheduling.md describes what that means at daylight-saving
changes (a fire time inside the skipped hour moves to the first instant after the gap, and
wall-clock times inside the repeated hour fire once for each offset).
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from croniter import CroniterBadDateError, CroniterError, croniter
from django.core.exceptions import ValidationError

ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 (0 and 7 are Sunday) or sun-sat"),
)

_NAMES_RE = re.compile(r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|sun|mon|tue|wed|thu|fri|sat")

# Standard cron syntax, field by field: *, a number or name, a range a-b, a step (*/n, a-b/n, a/n),
# and comma lists of those. croniter's extensions (L, W, #, ?, seconds or year fields, @reboot) are
# not part of what the form and the docs describe, so a new expression may not use them.
_ITEM = r"(?:\*|{v}(?:-{v})?)(?:/[0-9]{{1,2}})?"
_VALUE = {"month": r"(?:[0-9]{1,2}|[a-z]{3})", "day-of-week": r"(?:[0-9]|[a-z]{3})"}
_FIELD_RE = {
    name: re.compile("^{i}(?:,{i})*$".format(i=_ITEM.format(v=_VALUE.get(name, r"[0-9]{1,2}"))))
    for name, _allowed in FIELDS
}

IANA_AREAS = frozenset(
    {"Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian"}
    | {"Pacific", "Etc"}
)
"""Time zones a schedule may name: ``UTC`` and ``Area/Location`` in these areas (docs/scheduling.md)."""

MAX_SCAN = 5000
"""Most fire times one catch-up walks through; beyond that only the most recent ones are considered."""


class CronError(ValidationError):
    """A cron expression or time zone that cannot be scheduled; the message says what is wrong."""


def normalize(expression: str) -> str:
    """Collapse whitespace and lower-case aliases: the form stored and compared."""
    if not isinstance(expression, str):
        raise CronError("A cron expression must be a string.")
    text = " ".join(expression.split())
    return text.lower() if text.startswith("@") else text


def expand(expression: str) -> str:
    """The 5-field form of ``expression`` (aliases expanded); raises CronError when it is not one."""
    text = normalize(expression)
    if not text:
        raise CronError("Enter a cron expression, e.g. '0 9 * * 1-5' or '@daily'.")
    if text.startswith("@"):
        if text not in ALIASES:
            raise CronError(f"Unknown alias {text!r}: use one of {', '.join(ALIASES)}.")
        return ALIASES[text]
    fields = text.split(" ")
    if len(fields) != 5:
        extra = " (seconds and year fields are not supported)" if len(fields) in (6, 7) else ""
        raise CronError(
            f"A cron expression has exactly 5 fields: minute hour day-of-month month day-of-week; "
            f"{text!r} has {len(fields)}{extra}."
        )
    for (name, _allowed), value in zip(FIELDS, fields, strict=True):
        letters = _NAMES_RE.sub("", value.lower())
        if "h" in letters:
            raise CronError(f"The {name} field {value!r} uses H (hashed values), which is not supported.")
        if "r" in letters:
            raise CronError(f"The {name} field {value!r} uses R (random values): fire times must be fixed.")
    return text


def _field_problem(fields: list[str]) -> str | None:
    """Name the first field croniter rejects on its own, with the values it allows."""
    for index, ((name, allowed), value) in enumerate(zip(FIELDS, fields, strict=True)):
        probe = ["*"] * 5
        probe[index] = value
        try:
            croniter(" ".join(probe))
        except (CroniterError, ValueError, KeyError, IndexError):
            return f"The {name} field {value!r} is invalid: allowed values are {allowed}, with , - and /."
    return None


def _syntax_problem(fields: list[str]) -> str | None:
    """Name the first field outside standard cron syntax (croniter's extensions included)."""
    for (name, allowed), value in zip(FIELDS, fields, strict=True):
        if not _FIELD_RE[name].match(value.lower()):
            return (
                f"The {name} field {_quoted(value)} is invalid: allowed values are {allowed}, "
                "with * , - and / (extensions such as L, W, # and ? are not supported)."
            )
    return None


def _quoted(text: str) -> str:
    """A client's text inside a message: quoted, printable, at most 64 characters."""
    shown = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
    return f"'{shown[:64]}…'" if len(shown) > 64 else f"'{shown}'"


@lru_cache(maxsize=512)
def validate_cron(expression: str) -> str:
    """Return the normalized expression, or raise CronError saying what is wrong with it.

    Stricter than what :func:`iter_fire_times` can compute: a new expression must be standard
    5-field cron or one of :data:`ALIASES`, as the help text and docs/scheduling.md describe.
    """
    fields = expand(expression).split(" ")
    if problem := _syntax_problem(fields):
        raise CronError(problem)
    try:
        croniter(" ".join(fields))
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise CronError(_field_problem(fields) or f"Invalid cron expression {expression!r}: {exc}.") from None
    try:
        croniter(" ".join(fields), datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise CronError(f"The cron expression {expression!r} never fires (no date matches it).") from None
    return normalize(expression)


@lru_cache(maxsize=1)
def _iana_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@lru_cache(maxsize=256)
def validate_timezone(name: str) -> zoneinfo.ZoneInfo:
    """The ZoneInfo for an IANA name, or CronError naming close matches."""
    if not isinstance(name, str) or not name.strip():
        raise CronError("Enter an IANA time zone name, e.g. 'Europe/Berlin' or 'UTC'.")
    try:
        if name not in _iana_names():  # also keeps out paths, directories and "localtime"
            raise ValueError(name)
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(name, sorted(filter(_schedulable, _iana_names())), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise CronError(
            f"Unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'.{hint}"
        ) from None


def _schedulable(name: str) -> bool:
    area, slash, _location = name.partition("/")
    return name == "UTC" or bool(slash and area in IANA_AREAS)


def check_timezone(name: str) -> zoneinfo.ZoneInfo:
    """The ZoneInfo for a time zone a schedule may name (``UTC`` or an IANA ``Area/Location``), or
    CronError. Legacy aliases that zoneinfo also knows (``EST5EDT``, ``US/Eastern``, ``GB``,
    ``localtime``) are refused; schedules saved with one before still fire (``validate_timezone``)."""
    zone = validate_timezone(name)
    if not _schedulable(name):
        raise CronError(
            f"The time zone {_quoted(name)} is a legacy alias: use an IANA Area/Location name such as "
            "'Europe/Berlin' or 'America/New_York', or 'UTC'."
        )
    return zone


def iter_fire_times(expression: str, zone: str, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after`` (aware), in UTC, computed in the schedule's time zone."""
    tz = validate_timezone(zone)
    cron = croniter(expand(expression), after.astimezone(tz))
    while True:
        yield cron.get_next(datetime).astimezone(UTC)


def next_fire(expression: str, zone: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, in UTC."""
    return next(iter_fire_times(expression, zone, after))


def next_fire_times(expression: str, zone: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times after ``after``, in UTC (the admin shows them in the zone)."""
    times = iter_fire_times(expression, zone, after)
    return [next(times) for _ in range(count)]


def due_times(
    expression: str, zone: str, first: datetime, now: datetime, keep: int
) -> tuple[list[datetime], int]:
    """The last ``keep`` fire times from ``first`` (itself a fire time) up to ``now``, oldest first,
    and how many were due in all.

    Walks at most MAX_SCAN fire times; after a longer outage it restarts the walk a little over
    ``keep`` minutes before ``now``, so a per-minute schedule down for a month costs no more than
    one down for three days (the count is then a lower bound).
    """
    if first > now:
        return [], 0
    kept: deque[datetime] = deque([first], maxlen=keep)
    total = 1
    times = iter_fire_times(expression, zone, first)
    for moment in times:
        if moment > now:
            return list(kept), total
        kept.append(moment)
        total += 1
        if total >= MAX_SCAN:
            break
    recent: deque[datetime] = deque(maxlen=keep)
    for moment in iter_fire_times(expression, zone, now - timedelta(minutes=keep + 120)):
        if moment > now:
            break
        if moment > kept[-1]:
            recent.append(moment)
    if recent:
        total += len(recent)
        kept.extend(recent)
    return list(kept), total


def describe(expression: str) -> str:
    """Cron in words ("At 09:00, Monday through Friday"), or the expression itself if it cannot be."""
    try:
        fields = expand(expression)
    except CronError:
        return expression
    try:
        from cron_descriptor import get_description

        text = get_description(fields)
    except Exception:  # noqa: BLE001 - describing is cosmetic; never break a page over it
        return expression
    alias = normalize(expression)
    return f"{text} ({alias})" if alias.startswith("@") else text
