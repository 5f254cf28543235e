"""Errors of the tenants app: keys and quotas."""
from __future__ import annotations

from core.errors import ApiError


class InvalidKey(Exception):
    """The key is malformed, unknown, revoked or expired (the message says which)."""


class QuotaExceeded(ApiError):
    status = 429
