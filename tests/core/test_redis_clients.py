"""The job-traffic Redis clients (core/redis_clients.py) against a real Redis: a blocking
read waits as long as it asks for (a clone's reply may take longer than the client library's
default read timeout on a busy machine)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from django.test import override_settings

from tests.services import RedisServer, start_redis
from core import redis_clients

WAIT_S = 7  # longer than redis-py 8's default socket read timeout (5 s)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server: RedisServer = start_redis(tmp_path_factory.mktemp("clients-redis"))
    redis_clients.sync_redis.cache_clear()
    with override_settings(TTS_REDIS_URL=server.url):
        yield server.url
    redis_clients.sync_redis.cache_clear()
    server.stop()


def test_a_blocking_read_waits_its_own_timeout(redis_url: str) -> None:
    started = time.monotonic()
    assert redis_clients.sync_redis().blpop(["tts:test:nothing"], timeout=WAIT_S) is None
    assert WAIT_S - 0.5 < time.monotonic() - started < WAIT_S + 3


def test_an_async_blocking_read_waits_its_own_timeout(redis_url: str) -> None:
    async def wait() -> object:
        return await redis_clients.async_redis().blpop(["tts:test:nothing"], timeout=WAIT_S)

    started = time.monotonic()
    assert asyncio.run(wait()) is None
    assert WAIT_S - 0.5 < time.monotonic() - started < WAIT_S + 3
