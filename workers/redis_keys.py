"""Redis key names shared by the web processes and the workers (distributed mode)."""
from __future__ import annotations

PREFIX = "tts"
#: sorted set: worker name -> time its registration expires
WORKERS = f"{PREFIX}:workers"
#: hash: worker name -> seconds its engine took to load (published with each heartbeat)
WORKER_ENGINE_LOAD = f"{PREFIX}:workers:engine-load"
#: sorted set: job id -> time its worker's claim expires (running synthesis jobs)
ACTIVE_JOBS = f"{PREFIX}:jobs:active"
#: lock held by the worker that sweeps batch jobs this period (one sweep at a time, any worker)
BATCH_SWEEP_LOCK = f"{PREFIX}:batches:sweep"
#: lock held by the worker that looks for orphaned blobs this hour
ORPHAN_SWEEP_LOCK = f"{PREFIX}:blobs:orphan-sweep"
#: Celery's Redis transport keeps a queue's prioritised messages in lists named queue + sep + step
CELERY_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
#: how long a worker's or job's registration lasts without a heartbeat
REGISTRATION_TTL_S = 6.0
#: how long an abandoned text stream or clone reply may linger in Redis
LINGER_S = 3600
#: field of the marker a worker appends to a job's text stream when the job ends
END_FIELD = b"end"
#: how long a finished job's text stream is kept (a late cancel marker may still land)
ENDED_LINGER_S = 10


def text_stream(job_id: str) -> str:
    """Redis stream carrying one job's text pieces (and a cancel marker) to its worker."""
    return f"{PREFIX}:job:{job_id}:text"


def clone_reply(job_id: str) -> str:
    """Redis list the worker pushes one clone's result onto."""
    return f"{PREFIX}:clone:{job_id}:reply"


def stream_queue(queue: str) -> str:
    """Redis list of live stream jobs waiting for a worker (web RPUSHes, workers BLPOP)."""
    return f"{PREFIX}:streams:{queue}"


def celery_queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold a Celery queue's messages (one per priority step)."""
    return [queue + suffix for suffix in CELERY_PRIORITY_SUFFIXES]
