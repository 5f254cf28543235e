"""Live streams go from web processes to workers through a Redis list, not a Celery task.

A stream is latency work: a burst of 16 clients must all hear audio within a few
hundred milliseconds. Celery's Redis transport takes a burst one message at a time in
the worker's single consumer thread (a BRPOP, then its ack bookkeeping, each step
waiting for the GIL among busy job threads): 3-5 ms apart, so the 16th stream of a burst
started about 100 ms after the first. Here the web process RPUSHes the job (one async
round trip, no thread), and every worker that serves the synthesis queue BLPOPs it on its
I/O loop and runs it in its own stream threads. Clones and refinements stay Celery tasks.

Delivery is as before (Celery's stream task was not acked late): a job taken by a worker
that then dies is lost, and its client gets an error from the missing heartbeats. A job
nobody took within TTS_JOB_START_TIMEOUT has already been reported to its client as
failed, so a worker drops it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from redis.exceptions import RedisError

from core.redis_clients import async_redis
from workers import redis_keys

log = logging.getLogger(__name__)

#: how long one BLPOP waits before looking at the drain flag again
TAKE_BLOCK_S = 1.0


def job_message(job_id: str, request: dict[str, Any], voice: dict[str, Any], reply_channel: str, text: str = "",
                done: bool = False) -> str:
    """``text``/``done``: the request's first text, if it came with the request (the rest
    follows on the job's text stream)."""
    return json.dumps({"job_id": job_id, "request": request, "voice": voice, "reply_channel": reply_channel,
                       "text": text, "done": done, "enqueued_at": time.time()}, ensure_ascii=False)


#: RPUSH the job only while some worker is registered, in one round trip (a job queued
#: with no worker alive would only time out, and its client should hear so at once)
_ENQUEUE_IF_WORKERS = """
if redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf') == 0 then return 0 end
return redis.call('RPUSH', KEYS[2], ARGV[2])
"""


async def enqueue(queue: str, message: str) -> bool:
    """Queue a stream job; False (nothing queued) when no worker is registered."""
    script = async_redis().register_script(_ENQUEUE_IF_WORKERS)
    return bool(await script(keys=[redis_keys.WORKERS, redis_keys.stream_queue(queue)], args=[time.time(), message]))


class StreamTaker:
    """Takes up to ``slots`` streams at a time off a queue and runs them in its threads.

    Runs on the worker's I/O loop; call ``start`` and ``stop_taking`` from any thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: str, slots: int, start_timeout_s: float) -> None:
        self.loop = loop
        self.queue = queue
        self.slots = slots
        self.start_timeout_s = start_timeout_s
        self.executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="tts-stream")
        self.taking = False
        self.running = 0
        self._task: Future[None] | None = None

    def start(self) -> None:
        self.taking = True
        self._task = asyncio.run_coroutine_threadsafe(self._take_forever(), self.loop)
        self._task.add_done_callback(_log_exit)
        log.info("taking streams from %s, %d at a time", redis_keys.stream_queue(self.queue), self.slots)

    def stop_taking(self) -> None:
        """No new streams (shutdown); the running ones go on."""
        self.taking = False

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no stream runs here (or the timeout); True when idle."""
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            time.sleep(0.1)
        return not self.running

    async def _take_forever(self) -> None:
        free = asyncio.Semaphore(self.slots)
        key = redis_keys.stream_queue(self.queue)
        while self.taking:
            await free.acquire()
            message = None
            try:
                message = await self._take_one(key)
            finally:
                if message is None:
                    free.release()
            if message is None:
                continue
            if not self.taking:  # shutdown began while this BLPOP waited: leave the job for another worker
                await self._put_back(key, message)
                free.release()
                return
            self._run(message, free)

    async def _take_one(self, key: str) -> str | None:
        try:
            reply = await async_redis().blpop([key], timeout=TAKE_BLOCK_S)
        except RedisError as exc:  # Redis restarting: try again shortly
            log.warning("could not take a stream: %s", exc)
            await asyncio.sleep(0.5)
            return None
        if reply is None:
            return None
        return reply[1].decode("utf-8") if isinstance(reply[1], bytes) else reply[1]

    async def _put_back(self, key: str, message: str) -> None:
        try:
            await async_redis().lpush(key, message)
        except RedisError as exc:
            log.warning("could not return a stream to the queue on shutdown: %s", exc)

    def _run(self, message: str, free: asyncio.Semaphore) -> None:
        try:
            job = json.loads(message)
            job_id, request, voice, reply_channel = job["job_id"], job["request"], job["voice"], job["reply_channel"]
            text, done = str(job.get("text", "")), bool(job.get("done", False))
            waited = time.time() - float(job["enqueued_at"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropping a malformed stream job: %s", exc)
            free.release()
            return
        if waited > self.start_timeout_s:
            log.warning("dropping stream %s: it waited %.1f s, past TTS_JOB_START_TIMEOUT", job_id, waited)
            free.release()
            return
        from workers.tasks import synthesize_stream

        self.running += 1
        future = self.loop.run_in_executor(self.executor, synthesize_stream, job_id, request, voice, reply_channel,
                                             text, done)

        def done(fut: asyncio.Future[None]) -> None:
            self.running -= 1
            free.release()
            if not fut.cancelled() and fut.exception() is not None:
                log.error("stream %s failed: %r", job_id, fut.exception())

        future.add_done_callback(done)


def _log_exit(task: Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the stream taker stopped: %r", task.exception())
