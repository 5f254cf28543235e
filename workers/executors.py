"""Thread pools of the embedded mode: blocking work never runs on the event loop.

Streams and clones have separate pools, so a burst of clones cannot take every
thread that live streams need. Every pool also caps the work waiting for it: past
the cap a caller gets a clear 429 instead of joining an unbounded queue.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from workers.errors import ServerBusy

T = TypeVar("T")


class BoundedPool:
    def __init__(self, name: str, workers: int, max_pending: int) -> None:
        self.name = name
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"tts-{name}")
        self.max_pending = max_pending
        self._slots = threading.BoundedSemaphore(max_pending)
        self._count_lock = threading.Lock()
        self.waiting = 0  # submitted, no thread yet (for /metrics)
        self.busy = 0  # running in a thread

    def _count(self, waiting: int, busy: int) -> None:
        with self._count_lock:
            self.waiting += waiting
            self.busy += busy

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` in the pool (call from the event loop); ServerBusy when the queue is full."""
        if not self._slots.acquire(blocking=False):
            raise ServerBusy(f"server is busy ({self.max_pending} {self.name} tasks already queued); retry shortly")

        def run() -> T:
            self._count(-1, 1)
            try:
                return fn()
            finally:
                self._count(0, -1)
                self._slots.release()

        self._count(1, 0)
        try:
            return asyncio.get_running_loop().run_in_executor(self.executor, run)
        except BaseException:
            self._count(-1, 0)
            self._slots.release()
            raise


_lock = threading.Lock()
_pools: dict[str, BoundedPool] = {}


def _build(name: str) -> BoundedPool:
    from django.conf import settings

    if name == "stream":  # a thread per allowed stream, nothing waiting
        return BoundedPool(name, settings.TTS_MAX_STREAMS, settings.TTS_MAX_STREAMS)
    if name == "clone":
        waiting = settings.TTS_CLONE_MAX_WAITING
        return BoundedPool(name, settings.TTS_CLONE_WORKERS, settings.TTS_CLONE_WORKERS + waiting)
    if name == "io":
        return BoundedPool(name, 4, 64)
    raise ValueError(f"unknown pool {name!r}")


def pool(name: str) -> BoundedPool:
    with _lock:
        if name not in _pools:
            _pools[name] = _build(name)
        return _pools[name]


def pool_stats() -> dict[str, tuple[int, int]]:
    """(waiting, busy) of each pool built so far in this process."""
    with _lock:
        pools = list(_pools.values())
    return {p.name: (p.waiting, p.busy) for p in pools}


async def run_in_pool(name: str, fn: Callable[..., T], *args: object) -> T:
    ctx = contextvars.copy_context()
    return await pool(name).submit(functools.partial(ctx.run, fn, *args))
