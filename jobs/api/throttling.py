"""Per-user throttling of job creation, kept in Redis so every web process shares one budget.

DRF's ``SimpleRateThrottle`` reads a history list from the cache and writes it back: two processes
can both read the same list and each let a request through. Here the whole sliding-window check is
one Lua script (``workers/lua/throttle.lua``, run by ``Broker.throttle``: a ZSET of the user's recent
request times), so the limit holds under concurrency. The rate is
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["job_create"]`` (``JOBQUEUE_API_CREATE_RATE``, e.g.
``600/minute``), read on each request.

Every response of a throttled view to a signed-in user (admitted or 429) carries the IETF draft's
``RateLimit-Limit`` (requests per window), ``RateLimit-Remaining`` (still free now) and ``RateLimit-Reset``
(seconds until the oldest admission leaves the window and frees a slot); a 429 also has ``Retry-After``
(DRF, from ``wait()``: the same number of seconds). When Redis is unreachable the request is let through
and the ``RateLimit-*`` headers are left out: the window is unknown.
"""

from __future__ import annotations

import logging
import math

import redis
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from jobs.dispatch import get_broker
from workers.broker import ThrottleResult

logger = logging.getLogger("jobs.api")

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/minute"`` -> (600, 60); None (no limit) when unset."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[0]]


def seconds(ms: int) -> int:
    """Whole seconds a client should wait for ``ms``: rounded up, at least 1 (headers take integers)."""
    return max(math.ceil(ms / 1000), 1)


def rate_limit_headers(limit: int, result: ThrottleResult) -> dict[str, str]:
    """The ``RateLimit-*`` fields for one admission decision."""
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(result.remaining),
        "RateLimit-Reset": str(seconds(result.reset_ms)),
    }


class JobCreateThrottle(BaseThrottle):
    """Scope ``job_create``, one window per user; fails open if Redis is down (enqueue must still work)."""

    scope = "job_create"

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        rate = parse_rate(api_settings.DEFAULT_THROTTLE_RATES.get(self.scope))
        user = getattr(request, "user", None)
        if rate is None or not (user and user.is_authenticated):
            return True
        limit, period = rate
        broker = get_broker()
        try:
            result = broker.throttle(self.scope, str(user.pk), period * 1000, limit)
        except redis.RedisError as exc:
            logger.warning("throttle %s skipped, Redis unavailable: %s", self.scope, exc)
            return True
        # DRF's finalize_response copies view.headers onto whatever response the view ends with, 429 included.
        view.headers.update(rate_limit_headers(limit, result))
        if result.admitted:
            return True
        self._wait = seconds(result.wait_ms)
        return False

    def wait(self) -> float | None:
        return self._wait
