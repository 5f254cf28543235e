"""What a distributed worker process runs beside its tasks.

- One event loop in a background thread carries every channel-layer send, text-stream
  read and heartbeat of the process (no event loop per chunk, as async_to_sync would make).
- A heartbeat registers the worker and its running jobs in Redis and tells each job's
  consumer that the job is alive, so a killed worker is noticed within seconds.
- A worker that serves the synthesis queue takes live streams off a Redis list
  (workers/stream_queue.py) and runs them in its own stream threads.
- On SIGTERM it stops taking streams; running ones may finish for TTS_WORKER_DRAIN_SECONDS,
  and any still running then get an error event instead of being cut off silently.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from celery import signals
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer

from core.redis_clients import async_redis
from synthesis.engines import registry
from synthesis.job import TextInbox
from workers import events, redis_keys
from workers.sink import ChannelLayerSink
from workers.stream_queue import StreamTaker

log = logging.getLogger(__name__)
T = TypeVar("T")

HEARTBEAT_INTERVAL_S = 1.0

#: seconds this process's engine took to load (published for the web processes' /metrics)
engine_load_seconds: float | None = None


@dataclass
class RunningJob:
    job_id: str
    inbox: TextInbox
    sink: ChannelLayerSink


class WorkerRuntime:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self.jobs: dict[str, RunningJob] = {}
        self.lock = threading.Lock()
        self.drain_deadline: float | None = None
        self.streams: StreamTaker | None = None
        self.thread = threading.Thread(target=self._run, name="worker-io-loop", daemon=True)
        self.thread.start()
        self.layer: BaseChannelLayer = self.call(self._make_layer())
        asyncio.run_coroutine_threadsafe(self._heartbeat_forever(), self.loop)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _make_layer(self) -> BaseChannelLayer:
        return get_channel_layer()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the process loop from a task thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # --- jobs ------------------------------------------------------------------------

    def add(self, job: RunningJob) -> None:
        with self.lock:
            self.jobs[job.job_id] = job

    def remove(self, job_id: str) -> None:
        with self.lock:
            self.jobs.pop(job_id, None)
        try:
            self.call(_forget_job(job_id), timeout=5)
        except Exception as exc:  # Redis away: the registration expires by itself
            log.warning("could not unregister job %s: %s", job_id, exc)

    def running(self) -> list[RunningJob]:
        with self.lock:
            return list(self.jobs.values())

    # --- heartbeats and drain ----------------------------------------------------------------

    async def _heartbeat_forever(self) -> None:
        while True:
            try:
                await self._heartbeat()
            except Exception as exc:  # Redis restarting: keep trying, the jobs decide their own fate
                log.warning("worker heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def _heartbeat(self) -> None:
        jobs = self.running()
        expires = time.time() + redis_keys.REGISTRATION_TTL_S
        redis = async_redis()
        async with redis.pipeline(transaction=False) as pipe:
            if self.drain_deadline is None:
                pipe.zadd(redis_keys.WORKERS, {self.name: expires})
                if engine_load_seconds is not None:  # with every heartbeat: survives a Redis restart
                    pipe.hset(redis_keys.WORKER_ENGINE_LOAD, self.name, f"{engine_load_seconds:.3f}")
            else:
                pipe.zrem(redis_keys.WORKERS, self.name)
            pipe.zremrangebyscore(redis_keys.WORKERS, "-inf", time.time())
            if jobs:
                pipe.zadd(redis_keys.ACTIVE_JOBS, {job.job_id: expires for job in jobs})
            pipe.zremrangebyscore(redis_keys.ACTIVE_JOBS, "-inf", time.time())
            await pipe.execute()
        ended = [job.job_id for job in jobs if job.job_id not in self.jobs]
        if ended:  # finished while the registration above was in flight: do not leave them listed
            await redis.zrem(redis_keys.ACTIVE_JOBS, *ended)
        # A job quiet for half an interval gets a heartbeat: its consumer then hears from it at
        # least every 1.5 intervals (1.5 s), well inside TTS_JOB_HEARTBEAT_TIMEOUT (3 s) even
        # when this loop runs late on a busy machine.
        quiet_since = time.monotonic() - HEARTBEAT_INTERVAL_S / 2
        for job in jobs:
            if job.sink.last_sent > quiet_since:
                continue  # it just sent audio (or started): that told its consumer it is alive
            try:
                await self.layer.send(job.sink.channel, events.Alive(job.job_id).as_message())
            except ChannelFull:
                pass  # the channel is full of this job's audio: the consumer knows it is alive
        if self.drain_deadline is not None and time.monotonic() > self.drain_deadline:
            await self._end_unfinished(jobs)

    async def _end_unfinished(self, jobs: list[RunningJob]) -> None:
        for job in jobs:
            if job.inbox.cancelled.is_set():
                continue
            job.inbox.cancel()
            log.warning("job %s did not finish before shutdown; ending it", job.job_id)
            try:
                await self.layer.send(job.sink.channel, events.Error(
                    job.job_id, "the synthesis worker shut down before this stream finished; please retry",
                ).as_message())
            except Exception as exc:
                log.warning("could not tell job %s's client: %s", job.job_id, exc)

    def take_streams(self, queue: str, slots: int, start_timeout_s: float) -> None:
        if self.streams is None:
            self.streams = StreamTaker(self.loop, queue, slots, start_timeout_s)
            self.streams.start()

    def begin_drain(self, seconds: float) -> None:
        if self.streams is not None:
            self.streams.stop_taking()
        self.drain_deadline = time.monotonic() + seconds
        log.info("draining: %d running streams may finish within %.0f s", len(self.running()), seconds)
        try:
            self.call(_unregister_worker(self.name), timeout=5)
        except Exception as exc:
            log.warning("could not unregister worker: %s", exc)


async def _forget_job(job_id: str) -> None:
    """Unlist the job and end its text stream: the marker ends the pump's blocking read."""
    stream = redis_keys.text_stream(job_id)
    redis = async_redis()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(redis_keys.ACTIVE_JOBS, job_id)
        pipe.xadd(stream, {redis_keys.END_FIELD: b"1"})
        pipe.expire(stream, redis_keys.ENDED_LINGER_S)
        await pipe.execute()


async def _unregister_worker(name: str) -> None:
    redis = async_redis()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(redis_keys.WORKERS, name)
        pipe.hdel(redis_keys.WORKER_ENGINE_LOAD, name)
        await pipe.execute()


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> WorkerRuntime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = WorkerRuntime(f"{socket.gethostname()}:{os.getpid()}")
        return _runtime


@signals.worker_init.connect
def _load_engine(**_: object) -> None:
    """Load and warm the engine before the worker takes its first task."""
    global engine_load_seconds
    started = time.monotonic()
    engine = registry.get_loaded_engine()
    # The engine's own timing of its load steps when it keeps one (as in embedded mode's /metrics).
    engine_load_seconds = sum((getattr(engine, "load_timings", None) or {}).values()) or time.monotonic() - started
    log.info("engine %s loaded in %.1f s", engine.name, engine_load_seconds)


@signals.worker_ready.connect
def _register(sender: Any = None, **_: object) -> None:
    from django.conf import settings

    runtime = get_runtime()
    queues = set(sender.app.amqp.queues.consume_from) if sender is not None else set()
    if settings.TTS_SYNTHESIS_QUEUE in queues:
        runtime.take_streams(settings.TTS_SYNTHESIS_QUEUE, settings.TTS_WORKER_STREAMS, settings.TTS_JOB_START_TIMEOUT)
    if settings.TTS_BATCH_QUEUE in queues:
        from workers import batch_sweeper  # imports models: only once Django is set up, as tasks are

        batch_sweeper.start(runtime.name)


@signals.worker_shutting_down.connect
def _drain(**_: object) -> None:
    from django.conf import settings

    if _runtime is not None:
        _runtime.begin_drain(settings.TTS_WORKER_DRAIN_SECONDS)


@signals.worker_shutdown.connect
def _wait_for_streams(**_: object) -> None:
    """Celery waits for its own tasks only: let running streams finish (or be ended at the drain
    deadline, with an error to their clients) before the process exits."""
    from django.conf import settings

    if _runtime is not None and _runtime.streams is not None:
        if _runtime.drain_deadline is None:  # stops taking streams, too
            _runtime.begin_drain(settings.TTS_WORKER_DRAIN_SECONDS)
        if not _runtime.streams.wait_idle(settings.TTS_WORKER_DRAIN_SECONDS + 2 * HEARTBEAT_INTERVAL_S + 3):
            log.warning("%d streams still running at exit", _runtime.streams.running)
