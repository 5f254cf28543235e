"""Thread pools of the embedded mode: blocking work never runs on the event loop.

Streams and clones have separate pools, so a burst of clones cannot take every
thread that live streams need.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}


def _size(name: str) -> int:
    from django.conf import settings

    return {"stream": settings.TTS_MAX_STREAMS, "clone": settings.TTS_CLONE_WORKERS, "io": 4}[name]


def pool(name: str) -> ThreadPoolExecutor:
    with _lock:
        executor = _pools.get(name)
        if executor is None:
            executor = ThreadPoolExecutor(max_workers=_size(name), thread_name_prefix=f"tts-{name}")
            _pools[name] = executor
        return executor


async def run_in_pool(name: str, fn: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(pool(name), functools.partial(ctx.run, fn, *args))
