"""Health checks for load balancers and orchestrators: is PostgreSQL answering, is Redis answering.

Each check is a single round trip with its latency; failures report only the exception class
(the message may name hosts), the details go to the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.db import DatabaseError, connection

from jobs.dispatch import get_broker

logger = logging.getLogger("jobs.api")


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    check()
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_database() -> dict[str, Any]:
    """``SELECT 1``; a connection broken by a server restart gets one fresh attempt before "down"."""
    try:
        return _timed(_select_one)
    except DatabaseError as first:
        if connection.in_atomic_block:
            return _down("database", first)
        connection.close()
        try:
            return _timed(_select_one)
        except DatabaseError as exc:
            return _down("database", exc)


def check_redis() -> dict[str, Any]:
    try:
        return _timed(get_broker().client.ping)
    except redis.RedisError as exc:
        return _down("redis", exc)


def _down(name: str, exc: Exception) -> dict[str, Any]:
    logger.warning("health: %s is down: %s", name, exc)
    return {"status": "down", "latency_ms": None, "error": type(exc).__name__}


def health() -> tuple[bool, dict[str, Any]]:
    database, cache = check_database(), check_redis()
    ok = database["status"] == "ok" and cache["status"] == "ok"
    return ok, {"status": "ok" if ok else "unavailable", "database": database, "redis": cache}
