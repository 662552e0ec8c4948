"""The SQL of ``jobs.services``: named statements from ``queries.sql``, and a server-side-binding cursor.

One file holds every statement the services send, so the SQL can be read, reviewed and explained
(``EXPLAIN``) as SQL, the way procrastinate keeps ``sql/queries.sql``. It is parsed once, at import;
a name that is missing fails at import too, not on the first job.

Django's psycopg cursors bind parameters on the client (``ClientCursor``): every statement is sent as
text with its values quoted into it, and the server parses and plans it again. For the few fixed
statements run for every job (the single-row INSERT of ``enqueue``, the worker's finish and claim of a
batch) that quoting and planning were a measured share of the worker's and the server's CPU (arrays of
128 ids quoted one element at a time). They go through ``fetch``: a plain psycopg cursor on Django's own
connection, so the same transaction and the same error translation, and psycopg prepares a statement
after ``prepare_threshold`` uses (5 by default; set ``"prepare_threshold": None`` in
``DATABASES["default"]["OPTIONS"]`` behind a pooler that cannot keep prepared statements).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections

_HEADER = re.compile(r"^-- name: (\w+)[ \t]*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """``{name: statement}`` from ``-- name:`` blocks; the comment lines right under a name are dropped.

    Text before the first name is the file's own preamble. Comments further down a statement stay in
    it: they are part of what PostgreSQL receives, as they were when the statements were literals.
    """
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, block in zip(parts[1::2], parts[2::2], strict=True):
        lines = block.split("\n")[1:]  # [0] is the rest of the header line
        while lines and lines[0].startswith("--"):
            lines.pop(0)
        statement = "\n".join(lines).strip()
        if not statement:
            raise ValueError(f"queries.sql: {name!r} has no statement")
        if name in queries:
            raise ValueError(f"queries.sql: {name!r} is defined twice")
        queries[name] = statement
    return queries


QUERIES: Mapping[str, str] = MappingProxyType(parse(Path(__file__).with_name("queries.sql").read_text()))
"""Every named statement of ``queries.sql``, read-only (``QUERIES["insert_job"]``...)."""


@contextmanager
def cursor() -> Iterator[psycopg.Cursor]:
    """A server-side-binding cursor on Django's connection; database errors become Django's."""
    conn = connections[DEFAULT_DB_ALIAS]  # resolve the thread's connection once, not per attribute
    conn.ensure_connection()
    with conn.wrap_database_errors, psycopg.Cursor(conn.connection) as cur:
        yield cur


def fetch(sql: str, params: Sequence[Any], prepare: bool | None = None) -> list[tuple[Any, ...]]:
    """Execute ``sql`` with server-side binding and return every row (``prepare`` as psycopg's)."""
    with cursor() as cur:
        cur.execute(sql, params, prepare=prepare)
        return cur.fetchall()
