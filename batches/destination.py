"""A job's ``destination``: copies of its outputs in the client's own S3 location, as
``<prefix>/<batch_id>/<index>.<extension>`` (written with each item, one PUT each, so a run
that happens twice writes the same object) and ``<prefix>/<batch_id>/manifest.json`` (the
job with its items, written when the job ends). The location must lie within the caller's
allowed S3 roots (``voices.tone_cache.confined_s3``, checked at creation)."""
from __future__ import annotations

import json
import logging

from batches.models import Batch
from batches.shape import annotated_batches, describe
from core.errors import ApiError
from synthesis.encoding import FORMATS
from voices import s3

log = logging.getLogger(__name__)


def _job_location(batch: Batch) -> s3.S3Location | None:
    if not batch.destination:
        return None
    return s3.parse_s3_url(batch.destination).child(batch.batch_id)


def write_item(batch: Batch, index: int, data: bytes) -> None:
    """Raises StorageUnavailable (retried) or another ApiError (the item fails)."""
    location = _job_location(batch)
    if location is not None:
        spec = FORMATS[batch.audio_format]
        s3.put_bytes(s3.get_client(), location.child(f"{index}.{spec.extension}"), data, spec.mime)


def write_manifest(batch_pk: int) -> None:
    """The ended job's manifest next to its files; a failure is logged (the files are there)."""
    batch = annotated_batches().filter(pk=batch_pk).first()
    location = _job_location(batch) if batch is not None else None
    if location is None:
        return
    manifest = describe(batch, list(batch.items.all()), with_callback=False)
    try:
        s3.put_bytes(s3.get_client(), location.child("manifest.json"),
                     json.dumps(manifest, ensure_ascii=False, indent=1).encode(), "application/json")
    except ApiError as exc:
        log.warning("batch %s: could not write its manifest to %s: %s", batch.batch_id, location.url, exc.message)
