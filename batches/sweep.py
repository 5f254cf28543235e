"""Periodic upkeep of batch jobs: expired jobs and their files go, items whose task was lost
are found again, and blobs nobody points at are removed.

Run by a timer in embedded mode (workers/batch_pool.py), by one worker at a time in
distributed mode (workers/batch_sweeper.py), and by ``manage.py purge_expired_batches``.
"""
from __future__ import annotations

import logging
import time

from django.db.models import Q
from django.utils import timezone

from batches import callbacks, services
from batches.errors import UnknownBatch
from batches.execution import lease_expired_before
from batches.models import Batch, BatchItem
from voices.feature_store import get_feature_store
from voices.models import Voice
from voices.services import delete_blobs

log = logging.getLogger(__name__)

#: at most this many items are queued again per sweep (the next sweep takes the rest)
REQUEUE_LIMIT = 1000
#: blobs younger than this are never orphans: a clone, refinement or item may be about to point at them
ORPHAN_MIN_AGE_S = 6 * 3600.0


def items_to_requeue(queue_is_empty: bool) -> list[int]:
    """Items of active jobs no task will run: those whose run died (lease expired) and, when
    the broker's batch queue is empty (a restart of the broker lost it), the pending ones.
    A task sent twice for one item runs it once (batches/execution.py)."""
    lost = Q(state=BatchItem.State.RUNNING, claimed_at__lt=lease_expired_before())
    if queue_is_empty:
        lost |= Q(state=BatchItem.State.PENDING)
    return list(BatchItem.objects.filter(lost, batch__state__in=Batch.ACTIVE).order_by("batch_id", "index")
                .values_list("pk", flat=True)[:REQUEUE_LIMIT])


def upkeep(*, orphans: bool) -> None:
    """One period's upkeep in either mode: the callbacks that are due (and those whose sender
    died), the jobs that expired, and, when ``orphans`` (hourly), the blobs nothing points at."""
    callbacks.deliver_due()
    purge_expired()
    if orphans:
        purge_orphan_blobs()


def purge_expired() -> tuple[int, int]:
    """Delete every job past its ``expires_at`` with all its files: (jobs, files) deleted."""
    jobs = files = 0
    for batch in Batch.objects.filter(expires_at__lte=timezone.now()).select_related("tenant").order_by("id"):
        try:
            files += services.delete(batch.tenant, batch.batch_id)
            jobs += 1
        except UnknownBatch:
            continue  # deleted meanwhile
    if jobs:
        log.info("deleted %d expired batch jobs and %d files", jobs, files)
    return jobs, files


def purge_orphan_blobs(min_age_s: float = ORPHAN_MIN_AGE_S) -> int:
    """Delete stored blobs that no voice and no batch item points at, older than ``min_age_s``
    (e.g. the prompt audio of a clone whose task expired before a worker took it)."""
    cutoff = time.time() - min_age_s
    candidates = [key for key, modified in get_feature_store().keys() if modified < cutoff]
    if not candidates:
        return 0
    used: set[str] = set()
    for start in range(0, len(candidates), 500):
        chunk = candidates[start:start + 500]
        used.update(Voice.objects.filter(features_key__in=chunk).values_list("features_key", flat=True))
        used.update(Voice.objects.filter(prompt_audio_key__in=chunk).values_list("prompt_audio_key", flat=True))
        used.update(BatchItem.objects.filter(output_key__in=chunk).values_list("output_key", flat=True))
    orphans = [key for key in candidates if key not in used]
    delete_blobs(*orphans)
    if orphans:
        log.info("deleted %d stored blobs nothing pointed at", len(orphans))
    return len(orphans)
