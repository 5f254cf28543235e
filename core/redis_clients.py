"""Redis clients for job traffic that is not the channel layer: text streams, clone
replies, worker and job registrations. Both reconnect by themselves after a Redis restart."""
from __future__ import annotations

import asyncio
import functools
import weakref

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

_RETRY_ERRORS = (redis.ConnectionError, redis.TimeoutError)
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary())


def _url() -> str:
    from django.conf import settings

    return settings.TTS_REDIS_URL


def _options() -> dict[str, object]:
    # No read timeout on the connection itself: blocking reads (XREAD, BLPOP) carry their own.
    # Said explicitly: redis-py 8 defaults to 5 s, which cut a clone's BLPOP for its reply (up to
    # TTS_CLONE_TIMEOUT) after its retries, about 26 s: a clone slower than that on a busy machine was a 500.
    return {"socket_connect_timeout": 5, "socket_timeout": None, "socket_keepalive": True,
            "health_check_interval": 10}


@functools.cache
def sync_redis() -> redis.Redis:
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), 4, supported_errors=_RETRY_ERRORS)
    return redis.Redis.from_url(_url(), retry=retry, **_options())


def async_redis(url: str | None = None) -> aioredis.Redis:
    """The client of the running event loop (a client must not cross event loops);
    ``url``: another Redis than TTS_REDIS_URL (the Celery broker's, say)."""
    loop = asyncio.get_running_loop()
    url = url or _url()
    clients = _async_clients.setdefault(loop, {})
    client = clients.get(url)
    if client is None:
        retry = AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 4, supported_errors=_RETRY_ERRORS)
        client = aioredis.Redis.from_url(url, retry=retry, **_options())
        clients[url] = client
    return client
