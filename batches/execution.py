"""Running one batch item, exactly once however often it is started.

A run claims the item (``pending`` -> ``running``, with a token and a lease), renders it,
writes the file in one atomic put under a key derived from (batch, index, this run), and
moves the row to ``succeeded`` -- pointing at that file -- only while it still holds the
claim, in the transaction that counts the usage. So however often an item runs (a worker
killed mid-item, a restart, a retry, a slow run whose lease another run took over), it ends
with exactly one whole file that its row names and checks; a run that lost its item
(cancelled, deleted, taken over) deletes its own file and counts nothing. (One key per run,
not per item: two live runs writing one key could leave the row's checksum naming the other
run's bytes, since model runs need not be bit-identical.)

The lease: while it renders, a run says it is alive every quarter of TTS_BATCH_LEASE_SECONDS;
a row whose claim is older than that belongs to a run that died (worker killed, server
stopped) and may be claimed again. The same watcher stops the render within about WATCH_S of a cancel.
"""
from __future__ import annotations

import enum
import hashlib
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from batches import callbacks, destination
from batches.models import Batch, BatchItem
from core.errors import ApiError, NotReady
from synthesis.engines.base import StopSignal, StreamStopped
from synthesis.engines.registry import get_loaded_engine
from synthesis.render import render_file
from tenants import usage
from voices.errors import InvalidRequest, StorageUnavailable
from voices.feature_store import get_feature_store, sha256_hex
from voices.services import delete_blobs, get_voice, load_features_by_key

log = logging.getLogger(__name__)

#: how often a running item looks at its row (cancel, delete)
WATCH_S = 1.0
#: runs that failed for a passing reason (storage, database, engine still loading) before the item fails
MAX_ATTEMPTS = 5

_STATE = BatchItem.State


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: failed for a passing reason; the item is pending again, to be retried later
    RETRY = "retry"
    #: nothing to do: the item is finished, cancelled, gone, or another live run holds it
    SKIPPED = "skipped"
    #: cancelled or deleted while it ran
    STOPPED = "stopped"


def output_key(batch: Batch, index: int, run: str) -> str:
    """Where a run of the item writes its file: fixed by the job (its row, not only its id, so a
    job made again under a deleted one's id never meets the old files), the index and the run."""
    seed = f"batch:{batch.pk}:{batch.created_at.isoformat()}:{index}:{run}"
    return f"{batch.tenant.slug}/{hashlib.sha256(seed.encode()).hexdigest()[:32]}.{batch.audio_format}"


def next_pending_item() -> int | None:
    """The next item to run, the active jobs taking turns (blocking: database): the first
    pending item of the job whose latest item started longest ago -- a job none of whose items
    has started yet first, then the oldest job. A tenant's 1000-item job does not keep another
    tenant's one-item job waiting behind it."""
    latest_start = (BatchItem.objects.filter(batch=OuterRef("pk"), started_at__isnull=False)
                    .order_by("-started_at").values("started_at")[:1])
    job = (Batch.objects.filter(state__in=Batch.ACTIVE)
           .filter(Exists(BatchItem.objects.filter(batch=OuterRef("pk"), state=_STATE.PENDING)))
           .annotate(latest_start=Subquery(latest_start))
           .order_by(F("latest_start").asc(nulls_first=True), "pk").values_list("pk", flat=True).first())
    if job is None:
        return None
    return (BatchItem.objects.filter(batch_id=job, state=_STATE.PENDING).order_by("index")
            .values_list("pk", flat=True).first())


def run_next_item(hint: int) -> Outcome:
    """One turn of batch work: the item whose task this is if its run died (its lease ran out),
    else the item the jobs' turns say is next (a task is a turn, not a particular item, so work
    queued behind a large job is still served in turn), else the hint itself."""
    stale = BatchItem.objects.filter(pk=hint, state=_STATE.RUNNING, claimed_at__lt=lease_expired_before())
    if stale.exists():
        return run_item(hint)
    for _ in range(3):  # another runner may claim the same next item first: take the one after
        pk = next_pending_item()
        if pk is None:
            return run_item(hint)
        outcome = run_item(pk)
        if outcome is not Outcome.SKIPPED:
            return outcome
    return Outcome.SKIPPED


def release_orphans() -> int:
    """Items left ``running`` by a process that is gone go back to pending (embedded mode, at
    start: that process was the only one that ran them)."""
    return BatchItem.objects.filter(state=_STATE.RUNNING).update(state=_STATE.PENDING, claim="")


def run_item(item_pk: int) -> Outcome:
    token = uuid.uuid4().hex
    item = _claim(item_pk, token)
    if item is None:
        return Outcome.SKIPPED
    stop = StopSignal()
    watcher = _Watcher(item.pk, token, stop)
    watcher.start()
    try:
        return _render_and_store(item, token, stop)
    finally:
        watcher.finish()
        settle_batch(item.batch_id)


def lease_expired_before() -> datetime:
    """Claims older than this belong to runs that died."""
    return timezone.now() - timedelta(seconds=settings.TTS_BATCH_LEASE_SECONDS)


def _claim(item_pk: int, token: str) -> BatchItem | None:
    now = timezone.now()
    free = Q(state=_STATE.PENDING) | Q(state=_STATE.RUNNING, claimed_at__lt=lease_expired_before())
    with transaction.atomic():
        taken = (BatchItem.objects.filter(free, pk=item_pk, batch__state__in=Batch.ACTIVE)
                 .update(state=_STATE.RUNNING, claim=token, claimed_at=now, started_at=now,
                         attempts=F("attempts") + 1))
        if not taken:
            return None
        item = BatchItem.objects.select_related("batch", "batch__tenant").get(pk=item_pk)
        Batch.objects.filter(pk=item.batch_id, state=Batch.State.QUEUED).update(state=Batch.State.RUNNING,
                                                                                started_at=now)
    return item


def _held(item_pk: int, token: str) -> QuerySet[BatchItem]:
    """The item's row while this run holds it (its claim, still running)."""
    return BatchItem.objects.filter(pk=item_pk, state=_STATE.RUNNING, claim=token)


def _render_and_store(item: BatchItem, token: str, stop: StopSignal) -> Outcome:
    batch = item.batch
    key = output_key(batch, item.index, token)
    try:
        voice = get_voice(batch.tenant, item.prompt_id)
        features = load_features_by_key(voice.features_key, voice.features_sha256)
        audio = render_file(get_loaded_engine(), features, item.text, batch.audio_format, batch.sample_rate,
                            batch.instruct_text, stop)
        if stop.is_set():
            raise StreamStopped()
        if audio.seconds <= 0:  # punctuation, emoji, invisible characters: no file to give
            raise InvalidRequest("the text has nothing to speak (no words the engine can read)")
        get_feature_store().put(key, audio.data)
        if not _held(item.pk, token).exists():
            raise StreamStopped()  # lost meanwhile: no copy at the destination either
        destination.write_item(batch, item.index, audio.data)
    except Exception as exc:
        delete_blobs(key)  # written or not: no file of this run stays behind
        return _failure(item, token, exc)
    with transaction.atomic():
        done = _held(item.pk, token).update(
            state=_STATE.SUCCEEDED, seconds=audio.seconds, output_key=key, output_sha256=sha256_hex(audio.data),
            output_bytes=len(audio.data), error="", finished_at=timezone.now())
        if done:
            usage.record(batch.tenant_id, characters=len(item.text), audio_seconds=audio.seconds)
    if done:
        return Outcome.SUCCEEDED
    delete_blobs(key)  # the item is not this run's any more: its file is not the item's
    current = BatchItem.objects.filter(pk=item.pk).values_list("state", flat=True).first()
    if current in (None, _STATE.CANCELLED):  # deleted or cancelled meanwhile
        return Outcome.STOPPED
    return Outcome.SKIPPED  # another run took it over (this one outlived its lease)


def _failure(item: BatchItem, token: str, exc: Exception) -> Outcome:
    """What a run that did not get to the end makes of it: stopped, retried later, or failed."""
    if isinstance(exc, StreamStopped):
        log.info("batch item %s stopped (cancelled or deleted)", item)
        return Outcome.STOPPED
    if isinstance(exc, (NotReady, StorageUnavailable, DatabaseError, OSError)):
        return _passing_failure(item, token, exc)
    if isinstance(exc, ApiError):
        return _fail(item, token, exc.message)
    log.error("batch item %s failed", item, exc_info=exc)
    return _fail(item, token, f"synthesis failed: {exc.__class__.__name__}")


def _passing_failure(item: BatchItem, token: str, exc: Exception) -> Outcome:
    if item.attempts >= MAX_ATTEMPTS:
        return _fail(item, token, f"gave up after {item.attempts} attempts: {_reason(exc)}")
    log.warning("batch item %s: %s; it will be retried", item, _reason(exc))
    try:
        _held(item.pk, token).update(state=_STATE.PENDING, claim="")
    except DatabaseError:
        pass  # the lease runs out instead
    return Outcome.RETRY


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, ApiError) else f"{exc.__class__.__name__}: {exc}"


def _fail(item: BatchItem, token: str, message: str) -> Outcome:
    _held(item.pk, token).update(state=_STATE.FAILED, error=message[:2000], finished_at=timezone.now())
    return Outcome.FAILED


def settle_batch(batch_pk: int) -> str | None:
    """Close the job once no item is left to run; returns its final state if this call closed it."""
    try:
        with transaction.atomic():
            batch = Batch.objects.select_for_update().filter(pk=batch_pk, state__in=Batch.ACTIVE).first()
            if batch is None or batch.items.filter(state__in=[_STATE.PENDING, _STATE.RUNNING]).exists():
                return None
            succeeded = batch.items.filter(state=_STATE.SUCCEEDED).count()
            total = batch.items.count()
            if succeeded == total:
                state = Batch.State.SUCCEEDED
            elif succeeded == 0:
                state = Batch.State.FAILED
            else:
                state = Batch.State.PARTIALLY_SUCCEEDED
            Batch.objects.filter(pk=batch_pk).update(state=state, finished_at=timezone.now())
    except DatabaseError as exc:
        log.warning("could not settle batch %s: %s", batch_pk, exc)
        return None
    log.info("batch %s %s", batch_pk, state)
    destination.write_manifest(batch_pk)
    callbacks.job_ended(batch_pk)
    return state


class _Watcher:
    """Renews the run's lease and sets ``stop`` when the item is no longer this run's."""

    def __init__(self, item_pk: int, token: str, stop: StopSignal) -> None:
        self.item_pk = item_pk
        self.token = token
        self.stop = stop
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"batch-item-{item_pk}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self._finished.set()
        self._thread.join(timeout=WATCH_S + 5)

    def _run(self) -> None:
        renewed = time.monotonic()
        renew_every = settings.TTS_BATCH_LEASE_SECONDS / 4
        try:
            while not self._finished.wait(WATCH_S):
                try:
                    mine = _held(self.item_pk, self.token)
                    if time.monotonic() - renewed >= renew_every:
                        held = mine.update(claimed_at=timezone.now())
                        renewed = time.monotonic()
                    else:
                        held = mine.exists()
                except DatabaseError as exc:  # the lease may run out; the final update decides
                    log.warning("batch item %s: could not renew its lease: %s", self.item_pk, exc)
                    close_old_connections()
                    continue
                if not held:
                    self.stop.set()
                    return
        finally:
            connection.close()
