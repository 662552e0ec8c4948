"""The one check of every JSON a job carries (its ``args`` and ``kwargs``/payload), wherever it comes in.

``jobs.services`` (``enqueue``, ``submit``, schedules through ``validate``), the API's fields, the
schedules API and the schedule admin form all call :func:`problems`, so a value is accepted or
refused, with the same words, everywhere. What it refuses, and why:

- a NUL character (``\\u0000``) or a lone surrogate in any string or object key: PostgreSQL's
  ``jsonb`` cannot store them;
- a value that is not JSON (a set, a datetime, bytes, an object key that is not a string, NaN or
  an infinite number);
- an integer outside -2**63 .. 2**63-1 (64-bit signed): what JSON readers in other languages and
  clients take back as an integer; beyond it a stored number can stop being readable at all
  (Python refuses to parse more than 4300 digits, so a worker could not load the row);
- nesting deeper than :data:`MAX_DEPTH` arrays/objects.

A leaf module: it imports nothing of the engine. Each problem is one message naming the path
inside the value in the caller's words (``args[2]``, ``payload.name``). Iterative, so a hostile
value cannot exhaust the recursion limit.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32
"""Most levels of nested arrays/objects in one value (the value itself is level 1)."""

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
INT_RANGE = "integers must be between -2**63 and 2**63-1 (64-bit signed)"

MAX_PROBLEMS = 10
"""Problems reported for one value; beyond that a single "and N more" message."""

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


def _key(path: str, key: str) -> str:
    if _NAME_RE.match(key):
        return f"{path}.{key}"
    shown = key if len(key) <= 40 else key[:40] + "…"
    # ensure_ascii escapes NUL and surrogates: the message itself is always valid, printable text
    return f"{path}[{json.dumps(shown)}]"


def _short(path: str) -> str:
    return path if len(path) <= 60 else f"{path[:30]}…{path[-20:]}"


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "strings must not contain NUL (\\u0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "strings must be valid Unicode (no lone surrogates such as \\ud800)"
    return None


def _json_type_name(value: Any) -> str:
    return type(value).__name__


Trail = tuple[Any, "str | int"] | None
"""Where a value sits: None for the field itself, else (the parent's trail, key or index). Paths are
only rendered for a problem, so a clean payload costs no string building."""


def _render(root: str, trail: Trail) -> str:
    steps: list[str | int] = []
    while trail is not None:
        trail, step = trail
        steps.append(step)
    path = root
    for step in reversed(steps):
        path = f"{path}[{step}]" if isinstance(step, int) else _key(path, step)
    return path


def problems(value: Any, root: str) -> list[str]:
    """What keeps ``value`` from being stored as a job's JSON: one message per problem, each naming
    its path from ``root`` (the field's name as the caller knows it). Empty when it is fine."""
    found: list[str] = []
    more = 0

    def report(trail: Trail, message: str, short: bool = False) -> None:
        nonlocal more
        if len(found) < MAX_PROBLEMS:
            path = _render(root, trail)
            found.append(f"{_short(path) if short else path}: {message}.")
        else:
            more += 1

    stack: list[tuple[Any, Trail, int]] = [(value, None, 1)]
    while stack:
        item, trail, depth = stack.pop()
        kind = type(item)
        if item is None or kind is bool:
            continue
        if kind is str or isinstance(item, str):
            if (not item.isascii() or "\x00" in item) and (problem := _string_problem(item)):
                report(trail, problem)
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                report(trail, INT_RANGE)
        elif isinstance(item, float):
            if not math.isfinite(item):
                report(trail, "numbers must be finite (no NaN or Infinity)")
        elif isinstance(item, (dict, list, tuple)):
            if depth > MAX_DEPTH:
                report(trail, f"nested too deeply: at most {MAX_DEPTH} levels of arrays and objects", True)
                continue
            children: list[tuple[Any, Trail, int]] = []
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        report(trail, f"object keys must be strings, not {_json_type_name(key)}")
                        continue
                    if (not key.isascii() or "\x00" in key) and (problem := _string_problem(key)):
                        report((trail, key), problem.replace("strings", "object keys"))
                    children.append((child, (trail, key), depth + 1))
            else:
                children = [(child, (trail, index), depth + 1) for index, child in enumerate(item)]
            stack.extend(reversed(children))  # report in document order
        else:
            report(
                trail,
                f"a value of type {_json_type_name(item)} is not JSON (use strings, numbers, "
                "true/false, null, arrays and objects)",
            )
    if more:
        found.append(f"{root}: … and {more} more problem{'s' if more > 1 else ''}.")
    return found


_LONGEST_INT = 4000
_HUGE = 10**_LONGEST_INT


def parse_int(text: str) -> int:
    """``json.load``'s ``parse_int`` for every JSON a job arrives in (API bodies, admin forms).

    Python refuses to parse more than 4300 digits (with a hint about ``sys.set_int_max_str_digits``);
    such a number is read as ±10**4000 instead, out of every range anything accepts, so the field
    it is in refuses it in its own words (``payload.n: integers must be between …``).
    """
    if len(text) > _LONGEST_INT:
        return -_HUGE if text.startswith("-") else _HUGE
    return int(text)


def loads(text: str) -> Any:
    """``json.loads`` with :func:`parse_int`, for text a client sent: any problem is a ``ValueError``
    whose message can be shown (NaN and Infinity are refused; so is nesting deep enough to exhaust
    Python's recursion limit)."""
    try:
        return json.loads(text, parse_int=parse_int, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; numbers must be finite")


def text_problem(value: str) -> str | None:
    """The string check alone (query parameters, headers): why ``value`` cannot be stored, or None."""
    problem = _string_problem(value)
    return f"{problem[0].upper()}{problem[1:]}." if problem else None


def dumps(value: Any) -> str:
    """The compact JSON stored for a value :func:`problems` accepted."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def size_problem(size: int, limit: int) -> str | None:
    """The payload-size rule: ``args`` and ``kwargs`` together, as compact JSON in UTF-8."""
    if size > limit:
        return f"Arguments and payload together are {size} bytes as JSON; the limit is {limit} bytes."
    return None
