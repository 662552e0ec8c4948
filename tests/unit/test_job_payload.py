"""``jobs.payload``: the one check of a job's JSON, without a database (the entrances that use it
are proved in tests/integration/test_input_validation_everywhere.py)."""

from __future__ import annotations

import pytest

from jobs import payload


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"user": {"name": "a\x00"}},
            "payload.user.name: strings must not contain NUL (\\u0000) characters.",
        ),
        (
            {"a b": ["\ud800"]},
            'payload["a b"][0]: strings must be valid Unicode (no lone surrogates such as \\ud800).',
        ),
        ({"n": 2**63}, "payload.n: integers must be between -2**63 and 2**63-1 (64-bit signed)."),
        ({"n": -(2**63) - 1}, "payload.n: integers must be between -2**63 and 2**63-1 (64-bit signed)."),
        ({"x": float("nan")}, "payload.x: numbers must be finite (no NaN or Infinity)."),
        ({"k": {1: 2}}, "payload.k: object keys must be strings, not int."),
        (
            {"s": {1, 2}},
            "payload.s: a value of type set is not JSON (use strings, numbers, true/false, null, "
            "arrays and objects).",
        ),
    ],
)
def test_each_problem_is_one_message_naming_its_path(value: object, expected: str) -> None:
    assert payload.problems(value, "payload") == [expected]


def test_json_values_at_the_limits_pass() -> None:
    deepest: object = 1
    for _ in range(payload.MAX_DEPTH):
        deepest = [deepest]
    value = {
        "min": -(2**63),
        "max": 2**63 - 1,
        "f": 1.5,
        "t": True,
        "n": None,
        "deep": deepest[0],
        "u": "é🙂",
    }
    assert payload.problems(value, "payload") == []
    assert payload.problems([deepest], "args") != []  # one level more


def test_problems_are_reported_in_document_order_and_capped() -> None:
    messages = payload.problems(["\x00"] * 25, "args")
    assert messages[:2] == [
        "args[0]: strings must not contain NUL (\\u0000) characters.",
        "args[1]: strings must not contain NUL (\\u0000) characters.",
    ]
    assert len(messages) == payload.MAX_PROBLEMS + 1
    assert messages[-1] == "args: … and 15 more problems."


def test_loads_reads_numbers_too_long_for_python_as_out_of_range() -> None:
    value = payload.loads('{"n": 1' + "0" * 5000 + ', "m": -1' + "0" * 5000 + "}")
    assert value["n"] > payload.INT_MAX and value["m"] < payload.INT_MIN
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        payload.loads("[NaN]")
    with pytest.raises(ValueError, match="nested too deeply"):
        payload.loads("[" * 100_000)
