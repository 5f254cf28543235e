"""Errors of the voices app, tone caches and storage included (each carries its HTTP status)."""
from __future__ import annotations

from core.errors import ApiError, NotFound


class UnknownVoice(NotFound):
    def __init__(self, prompt_id: str) -> None:
        super().__init__(f"unknown prompt_id: {prompt_id!r}")


class InvalidRequest(ApiError):
    status = 400


class CorruptData(ApiError):
    """Stored data that fails its checksum: the server's problem, not the client's."""

    status = 500


class ToneCacheError(ApiError):
    status = 400


class StorageUnavailable(ApiError):
    """The S3 endpoint could not be reached or failed: the server's upstream, hence 502."""

    status = 502


class MissingObject(NotFound):
    """The bucket exists but the key does not (S3's NoSuchKey)."""
