"""Per-tenant limits, counted where every web process sees the same numbers.

Distributed mode counts in Redis (several Daphne processes share one count); embedded
mode is one process and counts in memory. Both sides have the same async interface and
the same semantics:

- concurrent streams: a stream holds a lease until it ends. In Redis a lease whose web
  process died expires after LEASE_TTL_S (consumers refresh theirs while they run); in
  memory leases never expire (they die with the process that holds them).
- characters per UTC day, clones per hour: fixed windows; a refused request is not
  counted.
"""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from django.db import transaction

from core.errors import PayloadTooLarge
from core.hooks import Hook
from core.redis_clients import async_redis
from tenants.errors import QuotaExceeded
from tenants.models import Quota
from voices.models import Tenant, Voice

LEASE_TTL_S = 30.0


def _day() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


def _hour() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H")


class MemoryCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, set[str]] = {}
        self._windows: dict[str, int] = {}

    async def acquire_stream(self, tenant_id: int, stream_id: str, limit: int) -> None:
        with self._lock:
            leases = self._leases.setdefault(tenant_id, set())
            if len(leases) >= limit:
                raise QuotaExceeded(f"this tenant already has {limit} streams running (its limit)")
            leases.add(stream_id)

    async def refresh_stream(self, tenant_id: int, stream_id: str) -> None:
        pass

    async def release_stream(self, tenant_id: int, stream_id: str) -> None:
        with self._lock:
            leases = self._leases.get(tenant_id, set())
            leases.discard(stream_id)
            if not leases:
                self._leases.pop(tenant_id, None)

    async def take(self, window_key: str, amount: int, limit: int) -> bool:
        """Add ``amount`` to a window's count unless that would pass ``limit``."""
        with self._lock:
            if len(self._windows) > 10_000:  # old windows: keep the dict bounded
                current = (_day(), _hour())
                self._windows = {k: v for k, v in self._windows.items() if k.rsplit(":", 1)[-1] in current}
            used = self._windows.get(window_key, 0)
            if used + amount > limit:
                return False
            self._windows[window_key] = used + amount
            return True

    async def give_back(self, window_key: str, amount: int) -> None:
        """Undo a ``take`` whose request was refused after all."""
        with self._lock:
            if window_key in self._windows:
                self._windows[window_key] = max(0, self._windows[window_key] - amount)


# KEYS[1] = lease set; ARGV = now, expires, member, limit. Returns 1 if taken.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""
# KEYS[1] = window counter; ARGV = amount, limit, ttl. Returns 1 if counted.
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1] = window counter; ARGV = amount. Never below 0, never creates the key.
_GIVE_BACK = """
local used = tonumber(redis.call('GET', KEYS[1]) or '-1')
if used < 0 then return 0 end
redis.call('SET', KEYS[1], math.max(0, used - tonumber(ARGV[1])), 'KEEPTTL')
return 1
"""


class RedisCounters:
    @staticmethod
    def _client():
        return async_redis()

    async def acquire_stream(self, tenant_id: int, stream_id: str, limit: int) -> None:
        now = time.time()
        taken = await self._client().eval(_ACQUIRE, 1, f"tts:quota:{tenant_id}:streams", now, now + LEASE_TTL_S,
                                          stream_id, limit)
        if not taken:
            raise QuotaExceeded(f"this tenant already has {limit} streams running (its limit)")

    async def refresh_stream(self, tenant_id: int, stream_id: str) -> None:
        await self._client().zadd(f"tts:quota:{tenant_id}:streams", {stream_id: time.time() + LEASE_TTL_S}, xx=True)

    async def release_stream(self, tenant_id: int, stream_id: str) -> None:
        await self._client().zrem(f"tts:quota:{tenant_id}:streams", stream_id)

    async def take(self, window_key: str, amount: int, limit: int) -> bool:
        return bool(await self._client().eval(_TAKE, 1, f"tts:quota:{window_key}", amount, limit, 2 * 86400))

    async def give_back(self, window_key: str, amount: int) -> None:
        await self._client().eval(_GIVE_BACK, 1, f"tts:quota:{window_key}", amount)


#: The process's counters: in memory (embedded) or in Redis (distributed), as the mode's
#: backend says (workers/backend.py installs it).
counters: Hook[MemoryCounters | RedisCounters] = Hook("tenants.quotas.counters")


# --- checks used by the entry points -------------------------------------------------

def limits_of(tenant_id: int):
    """The tenant's Quota row or None (blocking: database)."""
    return Quota.objects.filter(tenant_id=tenant_id).first()


async def take_characters(tenant_id: int, quota, amount: int) -> None:
    if quota is None or quota.max_chars_per_day is None or amount <= 0:
        return
    if not await counters().take(f"{tenant_id}:chars:{_day()}", amount, quota.max_chars_per_day):
        raise QuotaExceeded(f"daily character quota of {quota.max_chars_per_day} reached (resets at 00:00 UTC)")


async def give_back_characters(tenant_id: int, quota, amount: int) -> None:
    """Return characters taken for a request that was refused after all (a refused request is not counted)."""
    if quota is None or quota.max_chars_per_day is None or amount <= 0:
        return
    await counters().give_back(f"{tenant_id}:chars:{_day()}", amount)


async def take_clone(tenant_id: int, quota) -> None:
    if quota is None or quota.max_clones_per_hour is None:
        return
    if not await counters().take(f"{tenant_id}:clones:{_hour()}", 1, quota.max_clones_per_hour):
        raise QuotaExceeded(f"clone rate limit of {quota.max_clones_per_hour} per hour reached; retry later")


def check_payload(quota, size: int) -> None:
    if quota is not None and quota.max_payload_bytes is not None and size > quota.max_payload_bytes:
        raise PayloadTooLarge(f"request body is {size} bytes; this tenant's limit is {quota.max_payload_bytes}")


def check_voice_count(tenant_id: int, quota) -> None:
    """Refuse early, before a clone does its work, when the tenant is at its voice limit (blocking: database).

    Only a courtesy: the check that holds is :func:`guard_voice_insert`, at the insert."""
    if quota is not None and quota.max_voices is not None:
        if Voice.objects.filter(tenant_id=tenant_id).count() >= quota.max_voices:
            raise QuotaExceeded(f"this tenant already has {quota.max_voices} voices (its limit); remove one first")


def lock_tenant(tenant_id: int) -> None:
    """Lock the tenant's row until the current transaction ends (blocking: database).

    Whatever changes a tenant's voices takes this lock first, so they queue in one order."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_tenant must run inside the transaction that changes the tenant's voices")
    list(Tenant.objects.select_for_update().filter(pk=tenant_id).values_list("pk", flat=True))


def guard_voice_insert(tenant_id: int) -> None:
    """Refuse one more voice row for a tenant at its voice limit (blocking: database).

    Every voice insert calls this (``voices.services.insert_voice``), so no path that
    creates voices -- /clone, /cache/load, the admin, a worker -- can pass the limit.
    It must run inside the inserting transaction: it locks the tenant's row first, so
    concurrent inserters for one tenant queue up and each counts what the others
    committed (a row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises
    writers). A refusal rolls that transaction back, so a bundle loads whole or not at all.
    """
    lock_tenant(tenant_id)
    quota = limits_of(tenant_id)
    if quota is not None and quota.max_voices is not None:
        if Voice.objects.filter(tenant_id=tenant_id).count() >= quota.max_voices:
            raise QuotaExceeded(f"this tenant may have at most {quota.max_voices} voices (its limit), "
                                "and this would add more; remove some first")
