"""The public shape of a batch job (shared/spec/API.md), read in one query with its counts."""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from batches.models import Batch, BatchItem

_ITEM_STATES = BatchItem.State


def annotated_batches() -> QuerySet[Batch]:
    """Batches with their item counts and audio seconds, in the same query."""
    return Batch.objects.annotate(
        n_total=Count("items"),
        n_succeeded=Count("items", filter=Q(items__state=_ITEM_STATES.SUCCEEDED)),
        n_failed=Count("items", filter=Q(items__state=_ITEM_STATES.FAILED)),
        n_cancelled=Count("items", filter=Q(items__state=_ITEM_STATES.CANCELLED)),
        n_running=Count("items", filter=Q(items__state=_ITEM_STATES.RUNNING)),
        seconds=Sum("items__seconds", filter=Q(items__state=_ITEM_STATES.SUCCEEDED)),
    )


def describe(batch: Batch, items: list[BatchItem] | None = None, with_callback: bool = True) -> dict[str, Any]:
    """The public job shape (shared/spec/API.md); ``batch`` from :func:`annotated_batches`."""
    total = batch.n_total
    done = batch.n_succeeded + batch.n_failed + batch.n_cancelled
    job: dict[str, Any] = {
        "id": batch.batch_id,
        "state": batch.state,
        "prompt_id": batch.prompt_id,
        "audio_format": batch.audio_format,
        "sample_rate": batch.sample_rate,
        "created_at": _iso(batch.created_at),
        "started_at": _iso(batch.started_at),
        "finished_at": _iso(batch.finished_at),
        "expires_at": _iso(batch.expires_at),
        "progress": round(done / total, 4) if total else 1.0,
        "counts": {"total": total, "succeeded": batch.n_succeeded, "failed": batch.n_failed,
                   "cancelled": batch.n_cancelled, "running": batch.n_running,
                   "pending": total - done - batch.n_running},
        "characters": batch.characters,
        "audio_seconds": round(batch.seconds or 0.0, 3),
    }
    if with_callback and batch.callback_url:
        job["callback"] = {"url": batch.callback_url, "state": batch.callback_state or "waiting for the job to end",
                           "attempts": batch.callback_attempts, "error": batch.callback_error or None,
                           "delivered_at": _iso(batch.callback_delivered_at)}
    if items is not None:
        job["items"] = [_describe_item(batch, item) for item in items]
    return job


def _describe_item(batch: Batch, item: BatchItem) -> dict[str, Any]:
    succeeded = item.state == _ITEM_STATES.SUCCEEDED
    return {
        "index": item.index,
        "name": item.name,
        "prompt_id": item.prompt_id,
        "state": item.state,
        "seconds": item.seconds if succeeded else None,
        "url": f"/batches/{batch.batch_id}/items/{item.index}" if succeeded else None,
        "error": item.error or None,
        "words": item.words,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


