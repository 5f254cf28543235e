"""Distributed mode's batch upkeep (batches/sweep.py), run by whichever worker takes the
sweep lock in Redis each period: no extra singleton process to run and supervise (as Celery
beat would be), it goes on while any worker lives, and it never waits behind queued items."""
from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings
from django.db import close_old_connections

from batches.sweep import items_to_requeue, upkeep
from core.redis_clients import sync_redis
from workers import redis_keys, remote

log = logging.getLogger(__name__)

ORPHAN_SWEEP_EVERY_S = 3600


def batch_queue_depth() -> int | None:
    """Messages waiting in the broker's batch queue; None when the broker is not Redis."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in redis_keys.celery_queue_lists(settings.TTS_BATCH_QUEUE):
                pipe.llen(name)
            return sum(pipe.execute())
    finally:
        client.close()


def sweep_once(worker: str) -> None:
    period = settings.TTS_BATCH_SWEEP_SECONDS
    if not sync_redis().set(redis_keys.BATCH_SWEEP_LOCK, worker, nx=True, px=max(100, int(period * 900))):
        return  # another worker sweeps this period
    requeue = items_to_requeue(queue_is_empty=batch_queue_depth() == 0)
    if requeue:
        log.info("queueing %d batch items again (their task was lost, or their run died)", len(requeue))
        remote.send_batch_items(requeue)
    upkeep(orphans=bool(sync_redis().set(redis_keys.ORPHAN_SWEEP_LOCK, worker, nx=True, ex=ORPHAN_SWEEP_EVERY_S)))


def start(worker: str) -> threading.Thread:
    def run() -> None:
        stop = threading.Event()
        while not stop.wait(settings.TTS_BATCH_SWEEP_SECONDS):
            try:
                sweep_once(worker)
            except Exception as exc:  # noqa: BLE001 - Redis, the database or S3 away: next period
                log.warning("batch sweep failed: %s", exc)
            finally:
                close_old_connections()

    thread = threading.Thread(target=run, name="tts-batch-sweep", daemon=True)
    thread.start()
    return thread
