"""What every bench script needs before Django starts: its own database on the server it was given.

Bench scripts never touch dev or test data: each creates (once) and uses a database of its own on
the server of ``DATABASE_URL``, and works under a fresh Redis key prefix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def server_urls() -> tuple[str, str]:
    """DATABASE_URL and REDIS_URL, or a clear exit when the script was not started with servers."""
    server_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not server_url or not redis_url:
        sys.exit(
            "DATABASE_URL and REDIS_URL must be set (run it under `python -m jobqueue_site.embedded run`)"
        )
    return server_url, redis_url


def ensure_database(server_url: str, name: str) -> None:
    """CREATE DATABASE ``name`` on the server of ``server_url`` unless it exists."""
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
        with contextlib.suppress(errors.DuplicateDatabase):  # a concurrent bench made it first
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def isolate(database: str, prefix: str = "jqbench", debug: bool = False, **extra: str) -> dict[str, str]:
    """Point this process (and every process it starts) at ``database`` and a fresh Redis key prefix.

    Production-like by default (DEBUG off, a throw-away secret); ``extra`` adds or overrides
    variables. Returns what was set; ``JOBQUEUE_REDIS_PREFIX`` names the prefix to clean up.
    """
    server_url, _redis_url = server_urls()
    ensure_database(server_url, database)
    env = {
        "DJANGO_SETTINGS_MODULE": "jobqueue_site.settings",
        "DATABASE_URL": with_database(server_url, database),
        "JOBQUEUE_REDIS_PREFIX": f"{prefix}-{uuid.uuid4().hex[:12]}",
        "DJANGO_DEBUG": "1" if debug else "0",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        "JOBQUEUE_LOG_FORMAT": "text",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    os.environ.update(env)
    return env


def delete_redis_prefix(client: object, prefix: str) -> int:
    """Unlink every key under ``prefix`` (a bench's own keys), 500 at a time; returns how many."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))  # type: ignore[attr-defined]
    for start in range(0, len(keys), 500):
        client.unlink(*keys[start : start + 500])  # type: ignore[attr-defined]
    return len(keys)
