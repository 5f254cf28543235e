"""What /metrics shows about batch jobs, read from the database at scrape time: the same
numbers from every web process, whichever process ran the items."""
from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F
from django.utils import timezone

from batches.models import Batch, BatchItem

#: item latencies are taken over items that finished this recently
LATENCY_WINDOW_S = 600.0
#: at most this many recent items are read for the latency figures
LATENCY_SAMPLE = 2000


def item_counts() -> dict[str, int]:
    """Items of every job still stored, by state (pending ones of active jobs are the batch backlog)."""
    counts = {state: 0 for state in BatchItem.State.values}
    for row in BatchItem.objects.values("state").annotate(n=Count("id")):
        counts[row["state"]] = row["n"]
    return counts


def backlog() -> int:
    """Items waiting to run: pending items of queued or running jobs."""
    return BatchItem.objects.filter(state=BatchItem.State.PENDING, batch__state__in=Batch.ACTIVE).count()


def recent_item_seconds(window_s: float = LATENCY_WINDOW_S) -> list[float]:
    """Wall seconds from claim to success of the items that succeeded in the last ``window_s``."""
    since = timezone.now() - timedelta(seconds=window_s)
    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    rows = (BatchItem.objects.filter(state=BatchItem.State.SUCCEEDED, finished_at__gte=since,
                                     started_at__isnull=False)
            .annotate(took=took).order_by("-finished_at").values_list("took", flat=True)[:LATENCY_SAMPLE])
    return sorted(t.total_seconds() for t in rows if t is not None)
