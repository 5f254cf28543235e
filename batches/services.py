"""What the batch endpoints do, as plain sync functions (the views run them off the event loop)."""
from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import tempfile
import zipfile
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from batches import callbacks, destination
from batches.errors import BatchConflict, ItemNotReady, UnknownBatch
from batches.models import Batch, BatchItem
from batches.shape import annotated_batches, describe
from batches.validation import BatchSpec
from core.errors import PayloadTooLarge
from synthesis.encoding import FORMATS
from tenants import quotas
from tenants.errors import QuotaExceeded
from voices.errors import InvalidRequest, UnknownVoice
from voices.feature_store import get_feature_store
from voices.models import Tenant, Voice
from voices.services import delete_blobs

log = logging.getLogger(__name__)

MAX_PAGE = 100
DEFAULT_PAGE = 20
#: archives are built here: in memory up to this size, then in a temporary file
ARCHIVE_SPOOL_BYTES = 16 * 1024 * 1024

_ITEM_STATES = BatchItem.State


def get_batch(tenant: Tenant, batch_id: str, annotated: bool = False) -> Batch:
    rows = annotated_batches() if annotated else Batch.objects
    try:
        return rows.get(tenant=tenant, batch_id=batch_id)
    except Batch.DoesNotExist:
        raise UnknownBatch(batch_id) from None


def existing_batch(tenant: Tenant, batch_id: str, spec: BatchSpec) -> Batch | None:
    """The job this id names, if any, when it has the same body (else 409)."""
    existing = Batch.objects.filter(tenant=tenant, batch_id=batch_id).first()
    return None if existing is None else _same_job(existing, spec.sha256())


def create_batch(tenant: Tenant, batch_id: str, spec: BatchSpec, actor: str) -> tuple[Batch, bool, str]:
    """Make the job the caller found no job for (:func:`existing_batch`) and checked
    (:func:`check_can_create`): (job, created, callback secret). If a concurrent request made
    one under this id meanwhile, that one, when it has the same body (else 409); the tenant's
    concurrent-job limit is checked again under the tenant's lock (429). Nothing is stored
    unless all is well."""
    digest = spec.sha256()
    secret = secrets.token_hex(32) if spec.callback_url else ""
    now = timezone.now()
    try:
        with transaction.atomic():
            _check_concurrent_jobs(tenant)
            batch = Batch.objects.create(
                tenant=tenant, batch_id=batch_id, body_sha256=digest, prompt_id=spec.prompt_id,
                audio_format=spec.audio_format, sample_rate=spec.sample_rate, instruct_text=spec.instruct_text,
                timestamps=spec.timestamps, callback_url=spec.callback_url, callback_secret=secret,
                destination=spec.destination, ttl_hours=spec.ttl_hours, characters=spec.characters, actor=actor[:200],
                created_at=now, expires_at=now + timedelta(hours=spec.ttl_hours),
            )
            BatchItem.objects.bulk_create(
                [BatchItem(batch=batch, index=i, name=item.name, text=item.text, prompt_id=item.prompt_id)
                 for i, item in enumerate(spec.items)],
                batch_size=500,
            )
    except IntegrityError:  # the same id created meanwhile by a concurrent request
        existing = existing_batch(tenant, batch_id, spec)
        if existing is None:
            raise
        return existing, False, ""
    return batch, True, secret


def check_can_create(tenant: Tenant, spec: BatchSpec) -> None:
    """Every voice known (404) and room for one more active job (429): checked before the
    job's characters are taken, and again (the job limit, under the tenant's lock) as it is made."""
    known = set(Voice.objects.filter(tenant=tenant, prompt_id__in=spec.prompt_ids).values_list("prompt_id", flat=True))
    for prompt_id in spec.prompt_ids:
        if prompt_id not in known:
            raise UnknownVoice(prompt_id)
    _check_concurrent_jobs(tenant, locked=False)


def _same_job(batch: Batch, digest: str) -> Batch:
    if batch.body_sha256 != digest:
        raise BatchConflict(f"batch id {batch.batch_id!r} is taken by a job with another body; choose another id")
    return batch


def _check_concurrent_jobs(tenant: Tenant, locked: bool = True) -> None:
    if locked:
        quotas.lock_tenant(tenant.id)
    quota = quotas.limits_of(tenant.id)
    limit = getattr(quota, "max_concurrent_batches", None)
    if limit is not None and Batch.objects.filter(tenant=tenant, state__in=Batch.ACTIVE).count() >= limit:
        raise QuotaExceeded(f"this tenant already has {limit} batch jobs queued or running (its limit)")


#: a retried PUT queues a job's pending items again only this long after they were last queued
REQUEUE_AFTER_S = 60.0


def items_to_queue(batch: Batch, created: bool) -> list[int]:
    """The pending items to hand to the runners now: all of a new job's; for a retried PUT of an
    active job, the pending ones again if they were last queued over REQUEUE_AFTER_S ago (and
    this request is the one that claims that turn), so a client's retry restarts a job whose
    queue was lost without letting retries fill the queue with copies."""
    now = timezone.now()
    if not created:
        if not batch.active:
            return []
        stale = Q(queued_at__isnull=True) | Q(queued_at__lt=now - timedelta(seconds=REQUEUE_AFTER_S))
        if not Batch.objects.filter(stale, pk=batch.pk).update(queued_at=now):
            return []
    else:
        Batch.objects.filter(pk=batch.pk).update(queued_at=now)
    return list(batch.items.filter(state=_ITEM_STATES.PENDING).values_list("pk", flat=True))


# --- reading -------------------------------------------------------------------------------

def job_with_items(tenant: Tenant, batch_id: str) -> dict[str, Any]:
    """One query for the job and its counts, one for its items."""
    batch = get_batch(tenant, batch_id, annotated=True)
    items = list(batch.items.only("index", "name", "prompt_id", "state", "seconds", "error", "words"))
    return describe(batch, items)


def list_page(tenant: Tenant, limit: int, cursor: str | None) -> dict[str, Any]:
    """The tenant's jobs, newest first; ``next`` continues after the last one shown."""
    rows = annotated_batches().filter(tenant=tenant).order_by("-id")
    if cursor is not None:
        rows = rows.filter(id__lt=_decode_cursor(cursor))
    page = list(rows[:limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return {"batches": [describe(b) for b in page], "next": _encode_cursor(page[-1].id) if more else None}


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE
    if not (value.isascii() and value.isdigit() and len(value) <= 4) or not 1 <= int(value) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(value)


def _encode_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": pk}).encode()).decode().rstrip("=")


#: cursors this server gives out are about 20 characters; anything much longer is not one
MAX_CURSOR_CHARS = 64


def _decode_cursor(cursor: str) -> int:
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidRequest("cursor is not one this server gave out")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))["before"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
        raise InvalidRequest("cursor is not one this server gave out") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest("cursor is not one this server gave out")
    return value


# --- changing ------------------------------------------------------------------------------

def cancel(tenant: Tenant, batch_id: str, notify: bool = True) -> bool:
    """Stop the job's pending and running items (running ones stop within seconds: their run
    watches its row). Finished items stay. Returns whether the job was still active.
    ``notify``: the job's callback, if it has one, says it ended (not when it is being deleted)."""
    with transaction.atomic():
        try:
            batch = Batch.objects.select_for_update().get(tenant=tenant, batch_id=batch_id)
        except Batch.DoesNotExist:
            raise UnknownBatch(batch_id) from None
        if not batch.active:
            return False
        now = timezone.now()
        batch.items.filter(state__in=[_ITEM_STATES.PENDING, _ITEM_STATES.RUNNING]).update(
            state=_ITEM_STATES.CANCELLED, claim="", finished_at=now)
        Batch.objects.filter(pk=batch.pk).update(state=Batch.State.CANCELLED, finished_at=now)
    if notify:
        destination.write_manifest(batch.pk)
        callbacks.job_ended(batch.pk)
    return True


def delete(tenant: Tenant, batch_id: str) -> int:
    """Cancel the job if needed, then delete it and every output it has; returns how many
    files were deleted. A run still writing its item deletes its own file when it finds the
    row gone (batches/execution.py)."""
    cancel(tenant, batch_id, notify=False)
    with transaction.atomic():
        batch = get_batch(tenant, batch_id)
        keys = list(batch.items.exclude(output_key="").values_list("output_key", flat=True))
        batch.delete()
    delete_blobs(*keys)
    return len(keys)


# --- outputs -------------------------------------------------------------------------------

def _finished_item(tenant: Tenant, batch_id: str, index: int) -> tuple[Batch, BatchItem]:
    batch = get_batch(tenant, batch_id)
    item = batch.items.filter(index=index).first()
    if item is None:
        raise ItemNotReady(f"batch job {batch_id!r} has no item {index}")
    if item.state != _ITEM_STATES.SUCCEEDED:
        raise ItemNotReady(f"item {index} of batch job {batch_id!r} is {item.state}: it has no audio")
    return batch, item


def item_file(tenant: Tenant, batch_id: str, index: int) -> tuple[bytes, str, str]:
    """(file bytes, MIME type, file name) of a finished item."""
    batch, item = _finished_item(tenant, batch_id, index)
    spec = FORMATS[batch.audio_format]
    data = get_feature_store().get(item.output_key, item.output_sha256)
    return data, spec.mime, f"{item.index}.{spec.extension}"


def archive(tenant: Tenant, batch_id: str) -> IO[bytes]:
    """A zip of ``manifest.json`` (the job with its items) and one file per finished item,
    ``<index>.<extension>``; spooled to disk past ARCHIVE_SPOOL_BYTES. The caller closes it."""
    batch = get_batch(tenant, batch_id, annotated=True)
    items = list(batch.items.all())
    size = sum(item.output_bytes for item in items if item.state == _ITEM_STATES.SUCCEEDED)
    if size > settings.TTS_BATCH_ARCHIVE_MAX_BYTES:
        raise PayloadTooLarge(f"the job's files come to {size} bytes, more than an archive may hold "
                              f"({settings.TTS_BATCH_ARCHIVE_MAX_BYTES}); download the items one by one")
    spec = FORMATS[batch.audio_format]
    store = get_feature_store()
    out = tempfile.SpooledTemporaryFile(max_size=ARCHIVE_SPOOL_BYTES)
    try:
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("manifest.json", json.dumps(describe(batch, items), ensure_ascii=False, indent=1),
                        compress_type=zipfile.ZIP_DEFLATED)
            for item in items:
                if item.state == _ITEM_STATES.SUCCEEDED:
                    # audio formats are compressed already, or (wav, pcm) quick to read as they are
                    zf.writestr(f"{item.index}.{spec.extension}", store.get(item.output_key, item.output_sha256))
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out
