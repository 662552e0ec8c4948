"""Per-user throttling of job creation, kept in Redis so every web process shares one budget.

DRF's ``SimpleRateThrottle`` reads a history list from the cache and writes it back: two processes
can both read the same list and each let a request through. Here the whole sliding-window check is
one Lua script (the ZSET holds the user's recent request times), so the limit holds under
concurrency. The rate is ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["job_create"]``
(``JOBQUEUE_API_CREATE_RATE``, e.g. ``600/minute``), read on each request.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

import redis
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from jobs.dispatch import get_broker

logger = logging.getLogger("jobs.api")

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# KEYS[1]: the user's window (ZSET of request times). ARGV: window ms, limit, a unique member.
# Returns 0 when the request is admitted, else the milliseconds until the oldest one leaves the window.
SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(tonumber(oldest[2]) + window - now, 1)
"""


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/minute"`` -> (600, 60); None (no limit) when unset."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[0]]


class JobCreateThrottle(BaseThrottle):
    """Scope ``job_create``, one window per user; fails open if Redis is down (enqueue must still work)."""

    scope = "job_create"

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        rate = parse_rate(api_settings.DEFAULT_THROTTLE_RATES.get(self.scope))
        user = getattr(request, "user", None)
        if rate is None or not (user and user.is_authenticated):
            return True
        limit, period = rate
        broker = get_broker()
        try:
            script = broker.client.register_script(SLIDING_WINDOW_LUA)
            wait_ms = int(
                script(
                    keys=[broker.key("throttle", self.scope, str(user.pk))],
                    args=[period * 1000, limit, uuid.uuid4().hex],
                )
            )
        except redis.RedisError as exc:
            logger.warning("throttle %s skipped, Redis unavailable: %s", self.scope, exc)
            return True
        if wait_ms == 0:
            return True
        self._wait = max(math.ceil(wait_ms / 1000), 1)
        return False

    def wait(self) -> float | None:
        return self._wait
