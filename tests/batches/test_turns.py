"""Which batch item runs next: the active jobs take turns, so a large job does not keep
another tenant's small one waiting behind it."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from batches.execution import next_pending_item
from batches.models import Batch, BatchItem
from voices.models import Tenant


def job(tenant: Tenant, batch_id: str, items: int, started: int = 0, minutes_ago: int = 0) -> list[BatchItem]:
    now = timezone.now()
    batch = Batch.objects.create(tenant=tenant, batch_id=batch_id, body_sha256="0" * 64, prompt_id="v",
                                 audio_format="wav", sample_rate=24000, expires_at=now + timedelta(hours=1),
                                 created_at=now - timedelta(minutes=minutes_ago))
    rows = []
    for index in range(items):
        done = index < started
        rows.append(BatchItem.objects.create(
            batch=batch, index=index, text="t", prompt_id="v",
            state=BatchItem.State.SUCCEEDED if done else BatchItem.State.PENDING,
            started_at=now - timedelta(minutes=minutes_ago - index) if done else None))
    return rows


@pytest.mark.django_db
def test_jobs_take_turns_and_a_new_job_goes_first() -> None:
    hog = Tenant.objects.create(slug="hog", name="hog")
    small = Tenant.objects.create(slug="small", name="small")
    big = job(hog, "big", items=1000, started=3, minutes_ago=10)
    assert next_pending_item() == big[3].pk
    little = job(small, "little", items=2)
    assert next_pending_item() == little[0].pk  # none of its items has started yet: its turn
    BatchItem.objects.filter(pk=little[0].pk).update(state=BatchItem.State.SUCCEEDED, started_at=timezone.now())
    assert next_pending_item() == big[3].pk  # the big job's latest start is older: its turn again
    BatchItem.objects.filter(pk=big[3].pk).update(state=BatchItem.State.SUCCEEDED, started_at=timezone.now())
    assert next_pending_item() == little[1].pk
    Batch.objects.filter(batch_id="little").update(state=Batch.State.CANCELLED)
    assert next_pending_item() == big[4].pk
    Batch.objects.update(state=Batch.State.CANCELLED)
    assert next_pending_item() is None
