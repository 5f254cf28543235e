"""API keys: ``tts_<prefix>_<secret>``, 256 bits of randomness, stored as SHA-256.

A fast hash is right here: the key is random and long, so there is nothing to brute
force; a slow password hash would only slow every request down.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone

from tenants.errors import InvalidKey
from tenants.models import ALL_SCOPES, ApiKey
from voices.models import Tenant

_KEY_RE = re.compile(r"^tts_([a-z0-9]{8,16})_([A-Za-z0-9_-]{20,100})$")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def create_key(tenant: Tenant, scopes: Iterable[str] = ALL_SCOPES, *, name: str = "",
               expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the key itself, which is never stored or shown again."""
    scopes = sorted(set(scopes))
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)} (known: {', '.join(ALL_SCOPES)})")
    prefix = secrets.token_hex(5)
    key = f"tts_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey.objects.create(tenant=tenant, name=name, prefix=prefix, key_sha256=_digest(key), scopes=scopes,
                                expires_at=expires_at)
    return row, key


def verify_key(key: str) -> ApiKey:
    """The active key row for ``key`` (blocking: database)."""
    match = _KEY_RE.match(key or "")
    if match is None:
        raise InvalidKey("malformed API key")
    row = ApiKey.objects.select_related("tenant").filter(prefix=match.group(1)).first()
    if row is None or not hmac.compare_digest(row.key_sha256, _digest(key)):
        raise InvalidKey("unknown API key")
    now = timezone.now()
    if row.revoked_at is not None:
        raise InvalidKey("this API key was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise InvalidKey("this API key has expired")
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=row.pk).update(last_used_at=now)  # at most once a minute per key
    return row


def revoke_key(row: ApiKey) -> None:
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
