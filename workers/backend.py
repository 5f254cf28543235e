"""The one place the mode is chosen: embedded (everything in this process) or distributed
(Celery/Redis workers). Everything that differs between the two modes is a method here;
the layers below (voices, tenants) get the backend handed over at start (``workers/apps.py``)
and the layers above call :func:`current`.

``current()`` reads ``settings.DISTRIBUTED`` on each call (two stateless objects), so a
test that overrides the setting gets the other backend.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from redis.exceptions import RedisError

from core.lazy import process_wide
from core.redis_clients import async_redis
from synthesis.engines import registry
from synthesis.request import TtsRequest
from tenants.quotas import MemoryCounters, RedisCounters
from voices import cloning, refine
from workers import embedded, redis_keys, remote
from workers.batch_pool import BatchPool
from workers.refine_queue import RefineQueue
from workers.runner import VoiceRef

if TYPE_CHECKING:
    from voices.models import Tenant
    from voices.prompt_audio import PromptAudio
    from voices.services import StoredBlob
    from workers.dispatch import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerGauges:
    """What /metrics shows about the processes that run jobs."""

    #: None in embedded mode (no Redis); False when Redis did not answer in time
    redis_up: bool | None
    queues: dict[str, int] = field(default_factory=dict)
    live_workers: int = 0
    engine_load_seconds: list[float] = field(default_factory=list)


class EmbeddedBackend:
    """Jobs, clones and refinements run in this process; quotas are counted in memory."""

    name = "embedded"
    #: how often the consumer looks at its job's liveness: None, an in-process job cannot vanish
    liveness_tick_s: float | None = None

    async def start_job(self, job_id: str, request: TtsRequest, voice: VoiceRef, reply_channel: str, text: str,
                        done: bool) -> Job:
        return embedded.start_embedded_job(job_id, request, voice, reply_channel, text, done)

    def clone(self, tenant: Tenant, prompt_id: str, prompt_text: str, audio: PromptAudio, audio_blob: StoredBlob,
              note: str) -> bool:
        return cloning.register_clone(tenant, prompt_id, prompt_text, audio, audio_blob, note)

    def check_can_clone(self) -> None:
        registry.get_ready_engine()  # NotReady at once while the engine loads

    def queue_refine(self, voice_id: int, features_key: str, features_sha256: str) -> bool:
        return _refine_queue().submit(voice_id, features_key, features_sha256)

    def submit_batch(self, item_ids: list[int]) -> None:
        """The pool takes pending items from the database: waking it is all there is to do."""
        _batch_pool().wake()

    def draining(self) -> bool:
        return False

    def quota_counters(self) -> MemoryCounters | RedisCounters:
        return _memory_counters()

    def on_web_start(self) -> None:
        if settings.TTS_PRELOAD_ENGINE:
            registry.start_loading()
        # One process: any voice still "refining" lost its refinement with the last one.
        threading.Thread(target=refine.recover_after_restart, name="refine-recovery", daemon=True).start()
        _batch_pool().start()  # and resumes the batch items that the last one had not finished

    async def health(self) -> tuple[bool, dict[str, object]]:
        status = registry.engine_status()
        return bool(status["loaded"] and status["warm"]), {"mode": self.name, **status}

    async def gauges(self, timeout_s: float) -> WorkerGauges:
        seconds = _local_engine_load_seconds()
        return WorkerGauges(redis_up=None, engine_load_seconds=[] if seconds is None else [seconds])


class DistributedBackend:
    """Jobs, clones and refinements go to Celery/Redis workers; quotas are counted in Redis."""

    name = "distributed"
    #: remote jobs can vanish with their worker: the consumer looks twice a second
    liveness_tick_s: float | None = 0.5

    async def start_job(self, job_id: str, request: TtsRequest, voice: VoiceRef, reply_channel: str, text: str,
                        done: bool) -> Job:
        return await remote.start_remote_job(job_id, request, voice, reply_channel, text, done)

    def clone(self, tenant: Tenant, prompt_id: str, prompt_text: str, audio: PromptAudio, audio_blob: StoredBlob,
              note: str) -> bool:
        return remote.clone_on_worker(tenant.id, prompt_id, prompt_text, audio_blob, audio.sample_rate, note)

    def check_can_clone(self) -> None:
        pass  # a worker's engine is loaded before it registers; clone_on_worker refuses when none has

    def queue_refine(self, voice_id: int, features_key: str, features_sha256: str) -> bool:
        remote.send_refine(voice_id, features_key, features_sha256)
        return True

    def submit_batch(self, item_ids: list[int]) -> None:
        remote.send_batch_items(item_ids)

    def draining(self) -> bool:
        return remote.worker_draining()

    def quota_counters(self) -> MemoryCounters | RedisCounters:
        return _redis_counters()

    def on_web_start(self) -> None:
        pass  # workers hold the engine, and recover refinements in their tasks

    async def health(self) -> tuple[bool, dict[str, object]]:
        try:
            workers = await remote.live_workers()
            redis_ok = True
        except RedisError:
            workers, redis_ok = 0, False
        return bool(workers), {"mode": self.name, "redis": redis_ok, "workers": workers,
                               "streams": remote.slots.in_use}

    async def gauges(self, timeout_s: float) -> WorkerGauges:
        """Celery queue lengths, live workers and their engine load times, from Redis."""
        try:
            queues, workers, loads = await asyncio.wait_for(_read_redis(), timeout_s)
        except Exception as exc:  # Redis down or slow: answer with what this process knows
            log.warning("metrics: Redis did not answer in time (%s)", exc.__class__.__name__)
            return WorkerGauges(redis_up=False)
        return WorkerGauges(redis_up=True, queues=queues, live_workers=workers, engine_load_seconds=loads)


Backend = EmbeddedBackend | DistributedBackend
_EMBEDDED, _DISTRIBUTED = EmbeddedBackend(), DistributedBackend()


def current() -> Backend:
    """The backend of the configured mode (``TTS_MODE``)."""
    return _DISTRIBUTED if settings.DISTRIBUTED else _EMBEDDED


@process_wide
def _refine_queue() -> RefineQueue:
    return RefineQueue(settings.TTS_REFINE_QUEUE)


@process_wide
def _batch_pool() -> BatchPool:
    return BatchPool(settings.TTS_BATCH_THREADS)


@process_wide
def _memory_counters() -> MemoryCounters:
    return MemoryCounters()


@process_wide
def _redis_counters() -> RedisCounters:
    return RedisCounters()


def _local_engine_load_seconds() -> float | None:
    engine = getattr(registry, "_engine", None)  # never build or load an engine for a scrape
    if engine is None or not getattr(engine, "loaded", False):
        return None
    seconds = getattr(engine, "load_seconds", None)
    if seconds is None:
        timings = getattr(engine, "load_timings", None) or {}
        seconds = sum(timings.values()) if timings else None
    return None if seconds is None else float(seconds)


async def _read_redis() -> tuple[dict[str, int], int, list[float]]:
    queues: dict[str, int] = {}
    if settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
        names = list(dict.fromkeys([settings.TTS_SYNTHESIS_QUEUE, settings.TTS_CLONE_QUEUE_NAME,
                                    settings.TTS_BATCH_QUEUE]))
        async with async_redis(settings.CELERY_BROKER_URL).pipeline(transaction=False) as pipe:
            for name in names:
                for key in redis_keys.celery_queue_lists(name):
                    pipe.llen(key)
            lengths = await pipe.execute()
        step = len(redis_keys.CELERY_PRIORITY_SUFFIXES)
        queues = {name: sum(lengths[i * step:(i + 1) * step]) for i, name in enumerate(names)}
    redis = async_redis()
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(redis_keys.WORKERS, now, "+inf")
        pipe.hgetall(redis_keys.WORKER_ENGINE_LOAD)
        pipe.llen(redis_keys.stream_queue(settings.TTS_SYNTHESIS_QUEUE))
        live, published, streams_waiting = await pipe.execute()
    queues[settings.TTS_SYNTHESIS_QUEUE] = queues.get(settings.TTS_SYNTHESIS_QUEUE, 0) + streams_waiting
    live_names = set(live)
    loads = [float(value) for name, value in published.items() if name in live_names]
    stale = [name for name in published if name not in live_names]
    if stale:  # workers that died without unregistering
        await redis.hdel(redis_keys.WORKER_ENGINE_LOAD, *stale)
    return queues, len(live_names), loads
