"""Hot-path statements with server-side binding, so PostgreSQL can keep them prepared.

Django's psycopg cursors bind parameters on the client (``ClientCursor``): every statement is sent as
text with its values quoted into it, and the server parses and plans it again. For the few fixed
statements run for every job (the single-row INSERT of ``enqueue``, the worker's finish and claim of a
batch) that quoting and planning were a measured share of the worker's and the server's CPU (arrays of
128 ids quoted one element at a time). They go through a plain psycopg cursor on Django's own connection
instead: same transaction, same error translation, and psycopg prepares a statement after
``prepare_threshold`` uses (5 by default; set ``"prepare_threshold": None`` in
``DATABASES["default"]["OPTIONS"]`` behind a pooler that cannot keep prepared statements).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections


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
