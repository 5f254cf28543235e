"""The batch sweep against a real database and a local feature store: expired jobs go with
their files, blobs nothing points at go once they are old, everything else stays."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from batches.execution import output_key
from batches.models import Batch, BatchItem
from batches.sweep import items_to_requeue, purge_expired, purge_orphan_blobs
from voices import services
from voices.feature_store import get_feature_store, sha256_hex
from voices.models import Tenant


@pytest.fixture
def store(settings, tmp_path: Path) -> Iterator[Path]:
    settings.TTS_FEATURE_STORE = str(tmp_path)
    get_feature_store.cache_clear()  # the store is chosen once per process
    yield tmp_path
    get_feature_store.cache_clear()


def make_job(tenant: Tenant, batch_id: str, expires_in_h: float, items: int = 2) -> Batch:
    now = timezone.now()
    batch = Batch.objects.create(tenant=tenant, batch_id=batch_id, body_sha256="0" * 64, prompt_id="v",
                                 audio_format="wav", sample_rate=24000, created_at=now,
                                 expires_at=now + timedelta(hours=expires_in_h), state=Batch.State.SUCCEEDED)
    for index in range(items):
        key = output_key(batch, index, "run-1")
        get_feature_store().put(key, b"RIFF" + bytes(index))
        BatchItem.objects.create(batch=batch, index=index, text="hi", prompt_id="v", state=BatchItem.State.SUCCEEDED,
                                 output_key=key, output_sha256=sha256_hex(b"RIFF" + bytes(index)))
    return batch


def age(store: Path, key: str, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(store / key, (then, then))


@pytest.mark.django_db
def test_expired_jobs_are_deleted_with_their_files(store: Path) -> None:
    tenant = Tenant.objects.create(slug="sweep", name="sweep")
    old = make_job(tenant, "old-job", expires_in_h=-1)
    fresh = make_job(tenant, "fresh-job", expires_in_h=5)
    old_keys = list(old.items.values_list("output_key", flat=True))
    assert all((store / key).is_file() for key in old_keys)
    assert purge_expired() == (1, 2)
    assert not Batch.objects.filter(pk=old.pk).exists()
    assert not any((store / key).exists() for key in old_keys)
    assert all((store / key).is_file() for key in fresh.items.values_list("output_key", flat=True))
    assert purge_expired() == (0, 0)


@pytest.mark.django_db
def test_only_old_blobs_that_nothing_points_at_are_orphans(store: Path) -> None:
    tenant = Tenant.objects.create(slug="orphans", name="orphans")
    job = make_job(tenant, "kept", expires_in_h=5, items=1)
    kept_output = job.items.get().output_key
    lost_prompt = services.store_blob(tenant, b"audio of a clone whose task expired", "audio")
    young_prompt = services.store_blob(tenant, b"audio of a clone still running", "audio")
    voice_blobs = services.store_blobs(tenant, b"features", b"prompt audio")
    services.insert_voice(tenant, "v", {"prompt_text": "t", "engine": "e", "feature_version": "1"}, voice_blobs)
    for key in (kept_output, lost_prompt.key, voice_blobs.features_key, voice_blobs.prompt_audio_key):
        age(store, key, hours=7)
    (store / "orphans" / "tmp-write-in-progress").write_bytes(b"x")  # not a blob: never listed
    assert purge_orphan_blobs() == 1
    assert not (store / lost_prompt.key).exists()
    for key in (young_prompt.key, kept_output, voice_blobs.features_key, voice_blobs.prompt_audio_key):
        assert (store / key).is_file(), key


@pytest.mark.django_db
def test_lost_items_are_found_again(settings, store: Path) -> None:
    settings.TTS_BATCH_LEASE_SECONDS = 60
    tenant = Tenant.objects.create(slug="lost", name="lost")
    now = timezone.now()
    batch = Batch.objects.create(tenant=tenant, batch_id="running-job", body_sha256="0" * 64, prompt_id="v",
                                 audio_format="wav", sample_rate=24000, expires_at=now + timedelta(hours=1),
                                 state=Batch.State.RUNNING)
    pending = BatchItem.objects.create(batch=batch, index=0, text="a", prompt_id="v")
    dead = BatchItem.objects.create(batch=batch, index=1, text="b", prompt_id="v", state=BatchItem.State.RUNNING,
                                    claim="x", claimed_at=now - timedelta(seconds=61))
    BatchItem.objects.create(batch=batch, index=2, text="c", prompt_id="v", state=BatchItem.State.RUNNING,
                             claim="y", claimed_at=now)
    assert items_to_requeue(queue_is_empty=False) == [dead.pk]
    assert items_to_requeue(queue_is_empty=True) == [pending.pk, dead.pk]
    Batch.objects.filter(pk=batch.pk).update(state=Batch.State.CANCELLED)
    assert items_to_requeue(queue_is_empty=True) == []


@pytest.mark.django_db
def test_a_retried_put_queues_pending_items_again_at_most_once_a_minute(store: Path) -> None:
    from batches.services import REQUEUE_AFTER_S, items_to_queue

    tenant = Tenant.objects.create(slug="retry", name="retry")
    now = timezone.now()
    batch = Batch.objects.create(tenant=tenant, batch_id="retried", body_sha256="0" * 64, prompt_id="v",
                                 audio_format="wav", sample_rate=24000, expires_at=now + timedelta(hours=1))
    first = BatchItem.objects.create(batch=batch, index=0, text="a", prompt_id="v")
    BatchItem.objects.create(batch=batch, index=1, text="b", prompt_id="v", state=BatchItem.State.SUCCEEDED)
    assert items_to_queue(batch, created=True) == [first.pk]
    assert items_to_queue(batch, created=False) == []  # just queued: a retry adds no copies
    Batch.objects.filter(pk=batch.pk).update(queued_at=now - timedelta(seconds=REQUEUE_AFTER_S + 1))
    assert items_to_queue(batch, created=False) == [first.pk]  # long enough: the queue may have lost them
    assert items_to_queue(batch, created=False) == []
    Batch.objects.filter(pk=batch.pk).update(state=Batch.State.CANCELLED, queued_at=None)
    batch.refresh_from_db()
    assert items_to_queue(batch, created=False) == []
