"""Prometheus metrics of one web process, served at GET /metrics.

Everything the rest of the code calls is here, as one-liners: ``stream_started()``
returns a :class:`StreamMetrics` the consumer feeds (text in, chunks out, end),
``timed_clone()`` wraps a clone, ``count_error()`` sits at the two error boundaries
(the /tts consumer's ``_fail`` and the REST ``json_endpoint``). The hooks only touch
in-memory counters (no I/O per chunk); gauges that need Redis are computed when
/metrics is scraped, with a short timeout, on the event loop's async client.

Labels are bounded: error class names, HTTP statuses, pool and queue names, outcomes.
No prompt ids, tenants or request ids ever become labels.
"""
from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Iterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from batches import stats as batch_stats
from core.errors import ApiError
from workers import backend, executors

log = logging.getLogger(__name__)

disable_created_metrics()  # no *_created series: they double the scrape for no use here

#: This process's registry (not the library's global one, so tests and reloads stay clean).
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, process_cpu_seconds_total, ...

#: How long a scrape may wait for Redis before it answers without the Redis-backed gauges.
REDIS_SCRAPE_TIMEOUT_S = 0.5

TTFA = Histogram(
    "tts_time_to_first_audio_seconds",
    "Time to the first audio chunk relayed to the client; since=first_text: from the request's first text "
    "message, since=done: from its done message (only when done came before the first audio)",
    ["since"], registry=REGISTRY,
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
CHUNK_GAP = Histogram(
    "tts_audio_chunk_gap_seconds", "Time between consecutive audio chunks of one request, as relayed to the client",
    registry=REGISTRY, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)
RTF = Histogram(
    "tts_stream_rtf", "Real-time factor of completed requests: wall time from the first text to the end "
    "divided by the seconds of audio sent",
    registry=REGISTRY, buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0),
)
CLONE_SECONDS = Histogram(
    "tts_clone_duration_seconds", "Wall time of clones that ran (prompt fetch, vetting, features, storage)",
    registry=REGISTRY, buckets=(0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0, 120.0),
)

STREAMS_STARTED = Counter("tts_streams_started", "/tts requests started (a job was started)", registry=REGISTRY)
STREAMS_ENDED = Counter(
    "tts_streams_ended", "/tts requests ended, by outcome: completed (is_end sent), error, disconnected",
    ["outcome"], registry=REGISTRY,
)
CLONES = Counter(
    "tts_clones", "/clone requests that got past validation, by outcome: created, existed, rejected (4xx), "
    "failed (5xx)", ["outcome"], registry=REGISTRY,
)
ERRORS = Counter(
    "tts_errors", "Errors returned to clients, by entry point (http, ws), error class and HTTP status "
    "(WebSocket close code minus 4000)", ["source", "type", "status"], registry=REGISTRY,
)
CHARACTERS = Counter("tts_characters_received", "Text characters received on /tts", registry=REGISTRY)
AUDIO_SECONDS = Counter("tts_audio_seconds_sent", "Seconds of audio relayed to /tts clients", registry=REGISTRY)

ACTIVE_STREAMS = Gauge("tts_active_streams", "/tts requests running in this web process", registry=REGISTRY)
POOL_QUEUE = Gauge(
    "tts_pool_queue_depth", "Tasks waiting for a thread in this process's pools (stream, clone, io)", ["pool"],
    registry=REGISTRY,
)
POOL_BUSY = Gauge("tts_pool_busy_threads", "Threads of this process's pools running a task", ["pool"],
                  registry=REGISTRY)
ENGINE_LOAD = Gauge(
    "tts_engine_load_seconds", "Engine load time (embedded: this process's engine; distributed: min and max "
    "over the live workers)", ["stat"], registry=REGISTRY,
)


class _RedisGauges:
    """Distributed mode's gauges read from Redis at scrape time (absent in embedded mode)."""

    def __init__(self) -> None:
        #: (Redis answered, queue depths, live workers) of the latest scrape; None: embedded
        self.snapshot: tuple[bool, dict[str, int], int] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.snapshot is None:
            return
        up, queues, workers = self.snapshot
        yield GaugeMetricFamily("tts_redis_up", "1 if Redis answered this scrape within its timeout", value=int(up))
        if not up:
            return
        depth = GaugeMetricFamily("tts_queue_depth", "Jobs waiting for a worker (Redis LLEN): live streams "
                                  "in the synthesis queue, Celery tasks (clones, refinements) in the others",
                                  labels=["queue"])
        for name, value in queues.items():
            depth.add_metric([name], value)
        yield depth
        yield GaugeMetricFamily("tts_live_workers", "Registered synthesis workers", value=workers)


REDIS_GAUGES = _RedisGauges()
REGISTRY.register(REDIS_GAUGES)  # type: ignore[arg-type]


class _BatchGauges:
    """Batch jobs, read from the database at scrape time (batches/stats.py)."""

    def __init__(self) -> None:
        #: (items by state, backlog, recent item seconds, sorted) of the latest scrape; None: not read
        self.snapshot: tuple[dict[str, int], int, list[float]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.snapshot is None:
            return
        counts, waiting, took = self.snapshot
        items = GaugeMetricFamily("tts_batch_items", "Batch items of the jobs still stored, by state (outcomes: "
                                  "succeeded, failed, cancelled)", labels=["state"])
        for state, value in counts.items():
            items.add_metric([state], value)
        yield items
        yield GaugeMetricFamily("tts_batch_backlog", "Batch items waiting to run (pending items of active jobs)",
                                value=waiting)
        latency = GaugeMetricFamily("tts_batch_item_seconds", "Wall seconds from claim to success of the batch "
                                    "items that succeeded in the last 10 minutes", labels=["stat"])
        if took:
            for stat, q in (("p50", 0.5), ("p95", 0.95)):
                latency.add_metric([stat], took[min(len(took) - 1, int(q * len(took)))])
            latency.add_metric(["max"], took[-1])
        latency.add_metric(["count"], len(took))
        yield latency


BATCH_GAUGES = _BatchGauges()
REGISTRY.register(BATCH_GAUGES)  # type: ignore[arg-type]

# Children bound once: the per-chunk hooks do no label lookups.
_TTFA_FROM_TEXT = TTFA.labels(since="first_text")
_TTFA_FROM_DONE = TTFA.labels(since="done")
for _outcome in ("completed", "error", "disconnected"):
    STREAMS_ENDED.labels(outcome=_outcome)
for _outcome in ("created", "existed", "rejected", "failed"):
    CLONES.labels(outcome=_outcome)


# --- hooks -----------------------------------------------------------------------------


class StreamMetrics:
    """One /tts request's timings, fed by the consumer on its event loop (no locks, no I/O)."""

    __slots__ = ("done_at", "ended", "first_audio", "first_text", "last_audio", "seconds")

    def __init__(self) -> None:
        self.first_text: float | None = None
        self.done_at: float | None = None
        self.first_audio: float | None = None
        self.last_audio: float | None = None
        self.seconds = 0.0
        self.ended = False
        STREAMS_STARTED.inc()
        ACTIVE_STREAMS.inc()

    def text(self, characters: int, done: bool) -> None:
        """A text message of the client (characters accepted; done flag)."""
        now = time.monotonic()
        if self.first_text is None and (characters or done):
            self.first_text = now
        if done and self.done_at is None:
            self.done_at = now
        if characters:
            CHARACTERS.inc(characters)

    def chunk(self, seconds: float) -> None:
        """An audio chunk relayed to the client; ``seconds``: the job's audio so far (cumulative)."""
        now = time.monotonic()
        if self.first_audio is None:
            self.first_audio = now
            if self.first_text is not None:
                _TTFA_FROM_TEXT.observe(now - self.first_text)
            if self.done_at is not None:
                _TTFA_FROM_DONE.observe(now - self.done_at)
        else:
            assert self.last_audio is not None
            CHUNK_GAP.observe(now - self.last_audio)
        self.last_audio = now
        if seconds > self.seconds:
            AUDIO_SECONDS.inc(seconds - self.seconds)
            self.seconds = seconds

    def end(self, outcome: str) -> None:
        """The request ended: ``completed``, ``error`` or ``disconnected`` (counted once)."""
        if self.ended:
            return
        self.ended = True
        ACTIVE_STREAMS.dec()
        STREAMS_ENDED.labels(outcome=outcome).inc()
        if outcome == "completed" and self.first_text is not None and self.seconds > 0:
            RTF.observe((time.monotonic() - self.first_text) / self.seconds)


def stream_started() -> StreamMetrics:
    return StreamMetrics()


def count_error(source: str, exc: BaseException) -> None:
    """An error answered to a client at an entry point's boundary; ``source``: "http" or "ws"."""
    if isinstance(exc, ApiError):
        ERRORS.labels(source=source, type=type(exc).__name__, status=str(exc.status)).inc()
    else:  # a crash: its class stays in the log, not in a label
        ERRORS.labels(source=source, type="Unhandled", status="500").inc()


def count_http_error(kind: str, status: int) -> None:
    """A REST error answered without an exception of ours (wrong method, body too large)."""
    ERRORS.labels(source="http", type=kind, status=str(status)).inc()


def count_clone_existed() -> None:
    """A /clone answered ``existed`` without running."""
    CLONES.labels(outcome="existed").inc()


async def timed_clone(work: Awaitable[bool]) -> bool:
    """Await a clone (returns ``existed``), timing it and counting its outcome."""
    started = time.monotonic()
    try:
        existed = await work
    except ApiError as exc:
        CLONES.labels(outcome="rejected" if exc.status < 500 else "failed").inc()
        raise
    except Exception:
        CLONES.labels(outcome="failed").inc()
        raise
    if not existed:
        CLONE_SECONDS.observe(time.monotonic() - started)
    CLONES.labels(outcome="existed" if existed else "created").inc()
    return existed


# --- scrape-time gauges ------------------------------------------------------------------


def _read_batch_stats() -> tuple[dict[str, int], int, list[float]]:
    return batch_stats.item_counts(), batch_stats.backlog(), batch_stats.recent_item_seconds()


async def _refresh_gauges() -> None:
    try:
        BATCH_GAUGES.snapshot = await sync_to_async(_read_batch_stats)()
    except Exception as exc:  # noqa: BLE001 - the database away: the scrape answers without them
        log.warning("metrics: could not read batch jobs (%s)", exc.__class__.__name__)
        BATCH_GAUGES.snapshot = None
    for name, (waiting, busy) in executors.pool_stats().items():
        POOL_QUEUE.labels(pool=name).set(waiting)
        POOL_BUSY.labels(pool=name).set(busy)
    gauges = await backend.current().gauges(REDIS_SCRAPE_TIMEOUT_S)
    if gauges.redis_up is not None:
        REDIS_GAUGES.snapshot = (gauges.redis_up, gauges.queues, gauges.live_workers)
    ENGINE_LOAD.clear()
    if gauges.engine_load_seconds:
        ENGINE_LOAD.labels(stat="min").set(min(gauges.engine_load_seconds))
        ENGINE_LOAD.labels(stat="max").set(max(gauges.engine_load_seconds))


async def render() -> bytes:
    """The exposition text, with the scrape-time gauges brought up to date."""
    await _refresh_gauges()
    return generate_latest(REGISTRY)


def authorized(request: HttpRequest) -> bool:
    """Does the request carry TTS_METRICS_TOKEN (when one is set)?"""
    token = settings.TTS_METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
