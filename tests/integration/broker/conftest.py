"""Real Redis for the broker tests: one client per session, a fresh key prefix per test, deleted afterwards.

Pure Redis: no Django database access. The server comes from ``REDIS_URL`` (``make test`` starts one);
without it the tests error out instead of silently skipping.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from workers.broker import Broker


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """SCAN MATCH + UNLINK every key of ``prefix`` (also how tests simulate a Redis that lost its data)."""
    batch: list[str] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def sleep_until(broker: Broker, when_ms: int) -> None:
    """Wait on the Redis clock (the one the scripts use) until ``when_ms`` has passed."""
    while (left := when_ms - broker.now_ms()) >= 0:
        time.sleep(max(left, 1) / 1000)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.fail("REDIS_URL is not set: the broker tests need a real Redis server")
    return url


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"jqtest-{uuid.uuid4().hex}"
    yield prefix
    delete_prefix(redis_client, prefix)


@pytest.fixture
def broker(redis_client: redis.Redis, prefix: str) -> Broker:
    return Broker(redis_client, prefix)


@pytest.fixture
def wait_until_ms() -> Callable[[Broker, int], None]:
    """``wait_until_ms(broker, when_ms)``: sleep on the Redis clock until ``when_ms`` has passed."""
    return sleep_until


@pytest.fixture
def lose_redis_data(redis_client: redis.Redis, prefix: str) -> Callable[[], None]:
    """Simulate FLUSHALL for this test only: delete every key of its prefix."""
    return lambda: delete_prefix(redis_client, prefix)


@pytest.fixture
def blocking_broker(redis_url: str, prefix: str) -> Iterator[Broker]:
    """A broker on its own client, for BZPOPMIN (a blocked connection serves nothing else).

    Its connections are named after the test's prefix (CLIENT SETNAME), so a test can find them in
    CLIENT LIST and see whether they are blocked.
    """
    client = redis.Redis.from_url(redis_url, decode_responses=True, client_name=f"{prefix}-blocking")
    yield Broker(client, prefix)
    client.close()
