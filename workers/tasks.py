"""The work of distributed-mode workers: Celery tasks (clone, refine; named explicitly, as web
processes send by name) and live streams, which workers take off a Redis list instead
(workers/stream_queue.py)."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from celery import shared_task
from django.conf import settings
from redis.exceptions import RedisError

from batches.execution import Outcome, run_next_item
from core import logs
from core.errors import ApiError
from core.redis_clients import async_redis, sync_redis
from synthesis.job import TextInbox
from synthesis.request import TtsRequest
from voices import refine as refinement
from voices.cloning import clone_stored_prompt
from voices.models import Tenant
from voices.services import StoredBlob, delete_blobs
from workers import redis_keys
from workers.runner import VoiceRef, run_job
from workers.sink import ChannelLayerSink
from workers.worker_runtime import RunningJob, get_runtime

log = logging.getLogger(__name__)

#: Bounds for prefork pools (the threads pool cannot enforce them). Streams bound themselves:
#: text idle limit, text size limit, and the drain deadline on shutdown.
CLONE_TIME_LIMIT_S = 600
REFINE_TIME_LIMIT_S = 1800


#: how long one read of a job's text stream waits for something to arrive
PUMP_BLOCK_MS = 2000
#: how long a finished job waits for its pump to see the end marker before cancelling it
PUMP_EXIT_WAIT_S = 1.0


def synthesize_stream(job_id: str, request: dict, voice: dict, reply_channel: str, text: str = "",
                      done: bool = False) -> None:
    """Speak one stream, in a stream thread of the worker (workers/stream_queue.py takes it
    off the queue), starting with ``text`` (the text that came with the request).
    Never retried: a replay would repeat audio the client already has."""
    with logs.bound(request=job_id, job=job_id):  # the job id is the /tts request id
        _synthesize(job_id, request, voice, reply_channel, text, done)


def _synthesize(job_id: str, request: dict, voice: dict, reply_channel: str, text: str, done: bool) -> None:
    runtime = get_runtime()
    inbox = TextInbox(capacity=settings.TTS_MAX_TEXT_CHARS + 2)
    inbox.put(text, done)
    sink = ChannelLayerSink(runtime.layer, reply_channel, runtime.loop, job_id, inbox.cancelled)
    runtime.add(RunningJob(job_id, inbox, sink))
    pump = asyncio.run_coroutine_threadsafe(pump_text(job_id, inbox, settings.TTS_WS_IDLE_TIMEOUT + 30), runtime.loop)
    started = time.monotonic()
    try:
        stats = run_job(job_id, TtsRequest(**request), VoiceRef(**voice), inbox, sink)
        if stats is not None:
            log.info("job %s: %d chunks, %.1f s of audio in %.1f s", job_id, stats.chunks, stats.audio_seconds,
                     time.monotonic() - started)
    finally:
        inbox.cancel()
        runtime.remove(job_id)  # also writes the end marker that lets the pump return
        try:
            pump.result(timeout=PUMP_EXIT_WAIT_S)
        except Exception:  # noqa: BLE001 - Redis away or the pump failed: cancelling costs a connection, no more
            pump.cancel()


async def pump_text(job_id: str, inbox: TextInbox, idle_limit_s: float) -> None:
    """Move the client's text from the job's Redis stream into the job, as it arrives.

    Keeps reading after ``done`` for a cancel marker (the client left) until the job's
    end marker. A stream with no message for ``idle_limit_s`` is abandoned, so no job
    waits forever. The reads block long: anything written to the stream ends them at
    once, and ending on a marker instead of being cancelled keeps the connection
    (redis-py drops a connection whose blocking read is cancelled).
    """
    key = redis_keys.text_stream(job_id)
    last_id = "0-0"
    last_message = time.monotonic()
    failures = 0
    while not inbox.cancelled.is_set():
        try:
            reply = await async_redis().xread({key: last_id}, block=PUMP_BLOCK_MS, count=100)
            failures = 0
        except RedisError as exc:
            failures += 1
            if failures > 40:  # about 10 s without Redis
                log.warning("job %s lost its text stream: %s", job_id, exc)
                inbox.cancel()
                return
            await asyncio.sleep(0.25)
            continue
        if not reply:
            if time.monotonic() - last_message > idle_limit_s:
                log.info("job %s: no text for %.0f s; abandoning it", job_id, idle_limit_s)
                inbox.cancel()
            continue
        last_message = time.monotonic()
        for _stream, entries in reply:
            for entry_id, fields in entries:
                last_id = entry_id
                if b"cancel" in fields or redis_keys.END_FIELD in fields:
                    inbox.cancel()
                    return
                inbox.put(fields.get(b"text", b"").decode("utf-8"), fields.get(b"done") == b"1")


@shared_task(name="tts.clone", acks_late=False, ignore_result=True, time_limit=CLONE_TIME_LIMIT_S)
def clone(job_id: str, tenant_id: int, prompt_id: str, prompt_text: str, audio_key: str, audio_sha256: str,
          sample_rate: int, note: str = "", request_id: str = "") -> None:
    """The engine half of /clone; the answer goes back on a Redis list the web process waits on.
    ``request_id``: the /clone request's id, for the log lines."""
    with logs.bound(request=request_id or job_id, job=job_id):
        _clone(job_id, tenant_id, prompt_id, prompt_text, audio_key, audio_sha256, sample_rate, note)


def _clone(job_id: str, tenant_id: int, prompt_id: str, prompt_text: str, audio_key: str, audio_sha256: str,
           sample_rate: int, note: str) -> None:
    try:
        tenant = Tenant.objects.get(pk=tenant_id)
    except Tenant.DoesNotExist:
        delete_blobs(audio_key)
        result: dict[str, object] = {"error": True, "status": 404, "message": "tenant no longer exists"}
    else:
        try:
            existed = clone_stored_prompt(tenant, prompt_id, prompt_text, StoredBlob(audio_key, audio_sha256), sample_rate,
                                          note)
            result = {"error": False, "existed": existed}
        except ApiError as exc:
            result = {"error": True, "status": exc.status, "message": exc.message}
        except Exception as exc:
            log.exception("clone %s/%s failed", tenant_id, prompt_id)
            result = {"error": True, "status": 500, "message": f"clone failed: {exc.__class__.__name__}"}
    reply = redis_keys.clone_reply(job_id)
    with sync_redis().pipeline(transaction=False) as pipe:
        pipe.rpush(reply, json.dumps(result))
        pipe.expire(reply, 600)
        pipe.execute()


@shared_task(name="tts.refine", acks_late=False, ignore_result=True, time_limit=REFINE_TIME_LIMIT_S)
def refine(voice_id: int, features_key: str, features_sha256: str) -> None:
    """Refine a freshly cloned voice in the background and swap its features (voices/refine.py)."""
    with logs.bound(job=f"refine-{voice_id}"):
        try:
            refinement.recover_stuck(refinement.stale_after_s())
        except Exception as exc:  # noqa: BLE001 - a sweep that fails must not stop this refinement
            log.warning("could not sweep stuck refinements: %s", exc)
        outcome = refinement.refine_voice(voice_id, features_key, features_sha256)
        log.info("refinement of voice %s: %s", voice_id, outcome)


#: batch items this process runs at once (TTS_WORKER_BATCH_ITEMS): more would only queue for the engine
_batch_slots = threading.BoundedSemaphore(settings.TTS_WORKER_BATCH_ITEMS)
#: retries of an item's task after a passing failure (storage, database), backing off to BATCH_RETRY_MAX_S
BATCH_RETRIES = 8
BATCH_RETRY_MAX_S = 120


@shared_task(name="tts.batch_item", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             max_retries=BATCH_RETRIES)
def batch_item(self, item_id: int) -> None:
    """One turn of batch work (batches/execution.py ``run_next_item``: this item, or the one the
    jobs' turns say is next). Acknowledged only once it ran, so a worker killed mid-item leaves
    the message to another; an item's claim makes a second run of it harmless."""
    with logs.bound(job=f"batch-item-{item_id}"), _batch_slots:
        outcome = run_next_item(item_id)
    log.info("batch item %s: %s", item_id, outcome.value)
    if outcome is Outcome.RETRY:
        raise self.retry(countdown=min(BATCH_RETRY_MAX_S, 2 ** self.request.retries))
