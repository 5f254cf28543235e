"""Distributed-mode jobs, web side: hand a stream to a worker and talk to it.

Text goes to the worker through a per-job Redis stream (the worker reads it while it
speaks); audio comes back through the Redis channel layer. A job whose worker stops
sending anything, even heartbeats, is reported lost instead of left hanging.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from redis.exceptions import RedisError

from core import logs
from core.errors import ApiError, NotReady
from core.redis_clients import async_redis, sync_redis
from synthesis.request import TtsRequest
from voices.services import StoredBlob, delete_blobs
from workers import redis_keys, stream_queue
from workers.errors import ServerBusy, SynthesisFailed
from workers.runner import VoiceRef, request_as_dict

log = logging.getLogger(__name__)


class StreamSlots:
    """Streams this web process relays at once (TTS_MAX_STREAMS); used on the event loop only."""

    def __init__(self) -> None:
        self.in_use = 0

    def take(self) -> None:
        if self.in_use >= settings.TTS_MAX_STREAMS:
            raise ServerBusy(f"server is busy ({settings.TTS_MAX_STREAMS} streams running); retry shortly")
        self.in_use += 1

    def give_back(self) -> None:
        self.in_use -= 1


slots = StreamSlots()

#: Watchers ask about a job's liveness every half second (the stream consumer's watchdog; a
#: preview, while no event comes); a longer gap since the last question may mean this process
#: itself was not running, and costs at most one tick of delay (see RemoteJob.liveness_problem).
STALL_GAP_S = 1.5


@dataclass
class RemoteJob:
    job_id: str
    submitted_at: float = field(default_factory=time.monotonic)
    last_event_at: float | None = None
    last_asked_at: float | None = None
    done: bool = False
    remote = True

    async def send_text(self, text: str, done: bool) -> None:
        if not text and not done:
            return
        try:
            await _append(self.job_id, {"text": text, "done": "1" if done else "0"})
        except RedisError as exc:
            raise SynthesisFailed(f"lost the connection to the job queue ({exc.__class__.__name__}); please retry") from None

    def saw_event(self) -> None:
        self.last_event_at = time.monotonic()

    def liveness_problem(self) -> str | None:
        now = time.monotonic()
        asked_before, self.last_asked_at = self.last_asked_at, now
        if asked_before is not None and now - asked_before > STALL_GAP_S:
            # This process stopped for a while (a starved CPU, a paused host) and has just
            # resumed: the worker's audio and heartbeats that came meanwhile are queued on its
            # event loop, not yet seen, so the silence measured now is this process's, not the
            # worker's. Judge at the next question, once they have been handled.
            return None
        if self.last_event_at is None:
            if now - self.submitted_at > settings.TTS_JOB_START_TIMEOUT:
                return f"no synthesis worker took the request within {settings.TTS_JOB_START_TIMEOUT:g} s"
        elif now - self.last_event_at > settings.TTS_JOB_HEARTBEAT_TIMEOUT:
            return "the synthesis worker stopped responding (it may have crashed); please retry"
        return None

    def cancel(self) -> None:
        """Tell the worker to stop (fire and forget: the client is already gone or failed)."""
        self.finished()
        task = asyncio.get_running_loop().create_task(_append(self.job_id, {"cancel": "1"}))
        task.add_done_callback(_log_failure)

    def finished(self) -> None:
        if not self.done:
            self.done = True
            slots.give_back()


async def _append(job_id: str, fields: dict[str, str]) -> None:
    key = redis_keys.text_stream(job_id)
    async with async_redis().pipeline(transaction=False) as pipe:
        pipe.xadd(key, fields)
        pipe.expire(key, redis_keys.LINGER_S)
        await pipe.execute()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not cancel a remote job: %s", task.exception())


async def live_workers() -> int:
    return await async_redis().zcount(redis_keys.WORKERS, time.time(), "+inf")


async def start_remote_job(job_id: str, request: TtsRequest, voice: VoiceRef, reply_channel: str, text: str = "",
                           done: bool = False) -> RemoteJob:
    try:
        slots.take()
        try:
            # One round trip on this loop; workers drop a job nobody took within TTS_JOB_START_TIMEOUT.
            if not await stream_queue.enqueue(settings.TTS_SYNTHESIS_QUEUE, stream_queue.job_message(
                    job_id, request_as_dict(request), voice.as_dict(), reply_channel, text, done)):
                raise NotReady("no synthesis worker is running; please retry shortly")
        except BaseException:
            slots.give_back()
            raise
    except RedisError as exc:
        raise SynthesisFailed(f"the job queue is unreachable ({exc.__class__.__name__}); please retry") from None
    return RemoteJob(job_id)


def clone_on_worker(tenant_id: int, prompt_id: str, prompt_text: str, audio_blob: StoredBlob, sample_rate: int,
                    note: str = "") -> bool:
    """Run a clone's engine half on a clone worker and wait for its answer (blocking).

    The stored prompt audio is deleted here if the task never reaches a worker; once
    it has, the worker keeps it (in the new voice) or deletes it.
    """
    from workers.celery_app import app

    job_id = uuid.uuid4().hex
    try:
        if sync_redis().zcount(redis_keys.WORKERS, time.time(), "+inf") == 0:
            raise NotReady("no worker is running to clone voices; please retry shortly")
        app.send_task(
            "tts.clone",
            kwargs={"job_id": job_id, "tenant_id": tenant_id, "prompt_id": prompt_id, "prompt_text": prompt_text,
                    "audio_key": audio_blob.key, "audio_sha256": audio_blob.sha256, "sample_rate": sample_rate,
                    "note": note, "request_id": logs.request_id.get() or ""},
            queue=settings.TTS_CLONE_QUEUE_NAME,
            expires=settings.TTS_CLONE_TIMEOUT,
        )
    except BaseException:
        delete_blobs(audio_blob.key)
        raise
    reply = sync_redis().blpop([redis_keys.clone_reply(job_id)], timeout=settings.TTS_CLONE_TIMEOUT)
    if reply is None:
        raise ApiError(f"no clone worker answered within {settings.TTS_CLONE_TIMEOUT:g} s", status=504)
    result = json.loads(reply[1])
    if result.get("error"):
        raise ApiError(str(result.get("message")), status=int(result.get("status", 400)))
    return bool(result["existed"])


def send_refine(voice_id: int, features_key: str, features_sha256: str) -> None:
    """Queue a ``tts.refine`` task on the clone queue (voices.refine calls it through the backend)."""
    from workers.celery_app import app

    app.send_task(
        "tts.refine",
        kwargs={"voice_id": voice_id, "features_key": features_key, "features_sha256": features_sha256},
        queue=settings.TTS_CLONE_QUEUE_NAME,
        expires=settings.TTS_REFINE_EXPIRES,
    )


def send_batch_items(item_ids: list[int]) -> None:
    """One ``tts.batch_item`` task per item on the batch queue. An item whose task is lost
    stays pending in the database (batches/execution.py); a task that runs twice runs it once."""
    from workers.celery_app import app

    with app.producer_or_acquire() as producer:
        for item_id in item_ids:
            app.send_task("tts.batch_item", args=[item_id], queue=settings.TTS_BATCH_QUEUE, producer=producer)


def worker_draining() -> bool:
    """A distributed worker got SIGTERM: long searches end early (their best so far is kept)."""
    from workers import worker_runtime  # the Celery worker's runtime; imported only when asked, as before

    runtime = worker_runtime._runtime
    return runtime is not None and runtime.drain_deadline is not None
