"""Every status written as a literal in SQL or Lua is a real ``JobStatus`` or ``AttemptOutcome`` value.

The services' SQL and the broker's Lua scripts spell statuses as bare strings ('running', 'retrying', …)
that no type checker sees: a misspelled one is a query that silently matches nothing. This scans
every ``*.sql`` file and every SQL string literal in the project's Python packages, and every script in
``workers/lua/``, and collects the quoted words that are statuses, or stand where a status stands:

- compared with a status or outcome column: ``status = '…'``, ``'…' <> v.status``, ``status IN (…)``,
  ``status = ANY(ARRAY[…])``, ``%(status)s <> '…'``; in Lua ``status == '…'``, ``'status', '…'``;
- a THEN/ELSE value of a CASE that yields a status: assigned to a status column (``SET status = CASE
  … THEN 'cancelled'``) or with a status column as another branch (``… ELSE v.outcome END``);
- anywhere, a quoted word one typo away from a status (``'succeded'``), unless it is another word the
  models know (a field name, a dead letter resolution, a misfire policy).
"""

from __future__ import annotations

import ast
import difflib
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.apps import apps

from jobs.models import AttemptOutcome, JobStatus
from tests.support.helpers import REPO

STATUSES = frozenset(JobStatus.values) | frozenset(AttemptOutcome.values)
PYTHON_PACKAGES = ("jobs", "scheduling", "workers")  # where SQL may live as string literals
SQL_KEYWORD = re.compile(r"\b(?:SELECT|UPDATE|INSERT|DELETE)\b")  # upper case: SQL, not prose

# A quoted lower-case word: 'queued'. Lua also quotes with "".
_SQL_WORD = r"'([a-z][a-z_]*)'"
_ANY_QUOTED = r"'([^'\n]*)'"
_COLUMN = r"(?:\b\w+\.)?\b(?:status|outcome)\b(?:\)s)?"  # status, v.status, j.outcome, %(status)s
_OP = r"(?:=|<>|!=)"
SQL_CONTEXTS = [
    re.compile(rf"{_COLUMN}\s*{_OP}\s*{_ANY_QUOTED}", re.IGNORECASE),
    re.compile(rf"{_ANY_QUOTED}\s*{_OP}\s*{_COLUMN}", re.IGNORECASE),
]
SQL_LISTS = [
    re.compile(rf"{_COLUMN}\s+(?:NOT\s+)?IN\s*\(([^)]*)\)", re.IGNORECASE),
    re.compile(rf"{_COLUMN}\s*{_OP}\s*(?:ANY|ALL)\s*\(\s*ARRAY\s*\[([^\]]*)\]", re.IGNORECASE),
]
SQL_CASE = re.compile(r"\bCASE\b(.*?)\bEND\b", re.IGNORECASE | re.DOTALL)
SQL_CASE_VALUE = re.compile(rf"\b(?:THEN|ELSE)\s+{_ANY_QUOTED}", re.IGNORECASE)
SQL_CASE_COLUMN = re.compile(rf"\b(?:THEN|ELSE)\s+{_COLUMN}", re.IGNORECASE)
SQL_ASSIGNED = re.compile(rf"{_COLUMN}\s*=\s*\Z", re.IGNORECASE)

_LUA_QUOTED = r"""(?:'([^'\n]*)'|"([^"\n]*)")"""
LUA_CONTEXTS = [
    re.compile(rf"\bstatus\b\s*(?:==|~=)\s*{_LUA_QUOTED}"),
    re.compile(rf"{_LUA_QUOTED}\s*(?:==|~=)\s*\bstatus\b"),
    re.compile(rf"""['"]status['"]\s*,\s*{_LUA_QUOTED}"""),  # HSET key 'status' 'queued'
]
LUA_WORD = re.compile(r"""(?:'([a-z][a-z_]*)'|"([a-z][a-z_]*)")""")


@dataclass(frozen=True)
class Found:
    word: str
    where: str  # path:line
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.word!r} ({self.why})"


@functools.cache
def _known_words() -> frozenset[str]:
    """Quoted words in SQL/Lua that are not statuses: field names and the models' other choices."""
    words: set[str] = set()
    for config in apps.get_app_configs():
        if Path(config.path).parent != REPO:
            continue
        for model in config.get_models():
            for field in model._meta.get_fields():
                words.add(field.name)
                words.update(str(value) for value, _label in getattr(field, "choices", None) or ())
    return frozenset(words - STATUSES)


def _line(text: str, offset: int, first_line: int) -> int:
    return first_line + text.count("\n", 0, offset)


def sql_status_literals(text: str, where: str, first_line: int = 1) -> list[Found]:
    """Quoted words of SQL ``text`` that are statuses or stand where a status stands."""
    found: dict[tuple[str, int], Found] = {}

    def add(word: str, offset: int, why: str) -> None:
        line = _line(text, offset, first_line)
        found.setdefault((word, line), Found(word, f"{where}:{line}", why))

    for pattern in SQL_CONTEXTS:
        for match in pattern.finditer(text):
            add(match[1], match.start(1), "compared with a status column")
    for pattern in SQL_LISTS:
        for match in pattern.finditer(text):
            for item in re.finditer(_ANY_QUOTED, match[1]):
                add(item[1], match.start(1) + item.start(1), "in a list of statuses")
    for case in SQL_CASE.finditer(text):
        body = case[1]
        # A CASE yields a status when it is assigned to a status column or another branch is one.
        assigned = SQL_ASSIGNED.search(text, 0, case.start())
        if assigned or SQL_CASE_COLUMN.search(body):
            for value in SQL_CASE_VALUE.finditer(body):
                add(value[1], case.start(1) + value.start(1), "value of a CASE on a status")
    _add_words(re.finditer(_SQL_WORD, text), add)
    return list(found.values())


def lua_status_literals(text: str, where: str) -> list[Found]:
    found: dict[tuple[str, int], Found] = {}

    def add(word: str, offset: int, why: str) -> None:
        line = _line(text, offset, 1)
        found.setdefault((word, line), Found(word, f"{where}:{line}", why))

    for pattern in LUA_CONTEXTS:
        for match in pattern.finditer(text):
            group = 1 if match[1] is not None else 2
            add(match[group], match.start(group), "compared with or stored as a status")
    _add_words(LUA_WORD.finditer(text), add)
    return list(found.values())


def _add_words(matches: Iterable[re.Match[str]], add) -> None:
    """Every quoted word that is a status, or a near miss of one that no model knows otherwise."""
    known = _known_words()
    for match in matches:
        group = next(i for i in range(1, (match.re.groups or 0) + 1) if match[i] is not None)
        word = match[group]
        if word in STATUSES:
            add(word, match.start(group), "a status")
        elif word not in known and (close := difflib.get_close_matches(word, STATUSES, n=1, cutoff=0.8)):
            add(word, match.start(group), f"one typo away from {close[0]!r}")


def _is_docstring(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    holder = parents.get(parent) if isinstance(parent, ast.Expr) else None
    body = getattr(holder, "body", None)
    return bool(body) and body[0] is parent


def python_sql_literals(path: Path) -> Iterator[tuple[str, int]]:
    """(text, first line) of every non-docstring string literal in ``path`` that contains SQL."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and not isinstance(parents.get(node), ast.JoinedStr)
        ):
            if _is_docstring(node, parents):
                continue
            text = node.value
        else:
            continue
        if SQL_KEYWORD.search(text):
            yield text, node.lineno


def sql_sources(root: Path = REPO) -> list[tuple[str, str, int]]:
    """(label, SQL text, first line): every .sql file under the packages and every SQL literal."""
    sources = []
    for package in PYTHON_PACKAGES:
        for path in sorted((root / package).rglob("*.sql")):
            sources.append((str(path.relative_to(root)), path.read_text(), 1))
        for path in sorted((root / package).rglob("*.py")):
            for text, line in python_sql_literals(path):
                sources.append((str(path.relative_to(root)), text, line))
    return sources


def lua_sources(root: Path = REPO) -> list[tuple[str, str]]:
    return [
        (str(p.relative_to(root)), p.read_text()) for p in sorted((root / "workers" / "lua").glob("*.lua"))
    ]


def status_literals(root: Path = REPO) -> list[Found]:
    found = [f for label, text, line in sql_sources(root) for f in sql_status_literals(text, label, line)]
    found += [f for label, text in lua_sources(root) for f in lua_status_literals(text, label)]
    return found


def test_every_status_literal_in_sql_and_lua_is_a_job_status_or_attempt_outcome():
    assert lua_sources(), "no Lua scripts found under workers/lua: the scan would prove nothing"
    assert sql_sources(), "no SQL found in the project's packages: the scan would prove nothing"
    found = status_literals()
    assert found, "no status literal found in any SQL or Lua: is the scanner looking in the right place?"
    wrong = [f for f in found if f.word not in STATUSES]
    assert not wrong, "not a JobStatus or AttemptOutcome value:\n" + "\n".join(map(str, wrong))
    # The SQL that moves jobs between states names the states it moves them between.
    assert {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED} <= {f.word for f in found}


@pytest.mark.parametrize(
    ("text", "misspelled"),
    [
        ("UPDATE jobs_job SET status = 'succeded' WHERE id = %s", {"succeded"}),
        ("SELECT 1 FROM jobs_job j WHERE 'runing' = j.status", {"runing"}),
        ("SELECT 1 FROM jobs_job WHERE status NOT IN ('queued', 'sheduled')", {"sheduled"}),
        ("SELECT 1 FROM jobs_job WHERE status = ANY(ARRAY['queued', 'paused'])", {"paused"}),
        ("SELECT 1 WHERE %(status)s <> 'finished'", {"finished"}),
        ("UPDATE t SET s = CASE WHEN v.status = 'retrying' THEN 'canceled' ELSE v.status END", {"canceled"}),
        ("UPDATE jobs_job SET status = CASE WHEN x THEN 'stopped' ELSE 'queued' END", {"stopped"}),
        ("INSERT INTO jobs_jobattempt VALUES (%s, 'lease_expird')", {"lease_expird"}),
    ],
)
def test_the_scan_flags_a_misspelled_or_unknown_status_in_sql(text, misspelled):
    found = sql_status_literals(text, "example.sql")
    assert {f.word for f in found if f.word not in STATUSES} == misspelled


@pytest.mark.parametrize(
    ("text", "misspelled"),
    [
        ("redis.call('HSET', KEYS[1], 'status', 'qeued')", {"qeued"}),
        ('if status == "stopped" then return 0 end', {"stopped"}),
        ("local s = 'timed_ot'", {"timed_ot"}),
    ],
)
def test_the_scan_flags_a_misspelled_or_unknown_status_in_lua(text, misspelled):
    found = lua_status_literals(text, "example.lua")
    assert {f.word for f in found if f.word not in STATUSES} == misspelled


def test_the_scan_leaves_words_that_are_not_statuses_alone():
    sql = (
        "SELECT jsonb_build_object('attempt', a.number, 'outcome', a.outcome, 'error', a.error) "
        "FROM jobs_deadletter d WHERE d.resolution = 'retried' AND d.resolution <> ''"
    )
    message = (
        "SET error = CASE WHEN v.status IN ('retrying') THEN 'cancelled by an operator' ELSE v.error END"
    )
    lua = "redis.call('ZADD', KEYS[3], 'LT', at, 'm'); local key = prefix .. 'ready:' .. queue"
    assert sql_status_literals(sql, "example.sql") == []
    assert [f.word for f in sql_status_literals(message, "example.sql")] == ["retrying"]
    assert lua_status_literals(lua, "example.lua") == []


def test_sql_is_found_in_sql_files_and_in_python_string_literals_but_not_in_docstrings(tmp_path):
    package = tmp_path / "jobs"
    package.mkdir()
    (package / "queries.sql").write_text("-- name: x\nUPDATE jobs_job SET status = 'queued'\n")
    (package / "module.py").write_text(
        '"""UPDATE in prose: \'not_a_status\'."""\n'
        "def f():\n"
        '    """SELECT in a docstring."""\n'
        "    return \"SELECT 1 FROM jobs_job WHERE status = 'running'\"\n"
    )
    labels = [(label, line) for label, _text, line in sql_sources(tmp_path)]
    assert labels == [("jobs/queries.sql", 1), ("jobs/module.py", 4)]
    found = [f for label, text, line in sql_sources(tmp_path) for f in sql_status_literals(text, label, line)]
    assert sorted(str(f) for f in found) == [
        "jobs/module.py:4: 'running' (compared with a status column)",
        "jobs/queries.sql:2: 'queued' (compared with a status column)",
    ]
