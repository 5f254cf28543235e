"""Errors of batch jobs (each carries its HTTP status)."""
from __future__ import annotations

from core.errors import ApiError, NotFound


class UnknownBatch(NotFound):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch job {batch_id!r}")


class BatchConflict(ApiError):
    """The batch id is taken by a job with another body."""

    status = 409


class ItemNotReady(NotFound):
    """The item has no audio (yet, or ever)."""
