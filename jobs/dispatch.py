"""The process's connection to the Redis dispatch index (one Broker per process).

Kept apart from services so tests and the worker can hand in their own Broker,
and so a forked child never reuses its parent's sockets.
"""

from __future__ import annotations

import os
import threading

import redis
from django.conf import settings

from workers.broker import Broker

_lock = threading.Lock()
_broker: Broker | None = None


def redis_client(**overrides: object) -> redis.Redis:
    """A client for settings.REDIS_URL with short timeouts, so an outage fails fast instead of hanging."""
    options: dict[str, object] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 30,
    }
    options.update(overrides)
    return redis.Redis.from_url(settings.REDIS_URL, **options)


def get_broker() -> Broker:
    global _broker
    if _broker is None:
        with _lock:
            if _broker is None:
                _broker = Broker(redis_client(), prefix=settings.JOBQUEUE_REDIS_PREFIX)
    return _broker


def reset_broker() -> None:
    """Forget the cached broker (after fork, or when settings change in tests)."""
    global _broker
    _broker = None


os.register_at_fork(after_in_child=reset_broker)
