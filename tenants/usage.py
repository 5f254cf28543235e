"""Usage metering: one increment per request, on the tenant's row for the UTC day."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from tenants.models import UsageDay


def record(tenant_id: int, *, characters: int = 0, audio_seconds: float = 0.0, streams: int = 0,
           clones: int = 0) -> None:
    """Add to today's usage (blocking: database). Concurrent callers never lose an increment."""
    day = datetime.now(UTC).date()
    increments = {"characters": F("characters") + characters, "audio_seconds": F("audio_seconds") + audio_seconds,
                  "streams": F("streams") + streams, "clones": F("clones") + clones}
    if UsageDay.objects.filter(tenant_id=tenant_id, day=day).update(**increments):
        return
    try:
        with transaction.atomic():
            UsageDay.objects.create(tenant_id=tenant_id, day=day, characters=characters,
                                    audio_seconds=audio_seconds, streams=streams, clones=clones)
    except IntegrityError:  # another request created today's row first
        UsageDay.objects.filter(tenant_id=tenant_id, day=day).update(**increments)


def report(tenant_id: int, days: int = 30) -> dict[str, object]:
    """The tenant's usage for the last ``days`` days, per day and in total."""
    since: date = datetime.now(UTC).date() - timedelta(days=days - 1)
    rows = UsageDay.objects.filter(tenant_id=tenant_id, day__gte=since).order_by("day")
    totals = rows.aggregate(characters=Sum("characters"), audio_seconds=Sum("audio_seconds"),
                            streams=Sum("streams"), clones=Sum("clones"))
    return {
        "since": since.isoformat(),
        "days": [
            {"day": r.day.isoformat(), "characters": r.characters, "audio_seconds": round(r.audio_seconds, 3),
             "streams": r.streams, "clones": r.clones}
            for r in rows
        ],
        "total": {k: (round(v, 3) if isinstance(v, float) else v) or 0 for k, v in totals.items()},
    }
