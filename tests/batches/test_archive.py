"""The archive of a job against a real database and a local feature store."""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from batches import services
from core.errors import PayloadTooLarge
from tests.batches.test_sweep import make_job
from voices.feature_store import get_feature_store
from voices.models import Tenant


@pytest.fixture
def store(settings, tmp_path: Path) -> Iterator[Path]:
    settings.TTS_FEATURE_STORE = str(tmp_path)
    get_feature_store.cache_clear()
    yield tmp_path
    get_feature_store.cache_clear()


@pytest.mark.django_db
def test_the_archive_holds_the_manifest_and_each_finished_item(store: Path) -> None:
    tenant = Tenant.objects.create(slug="arch", name="arch")
    make_job(tenant, "two-items", expires_in_h=1, items=2)
    with services.archive(tenant, "two-items") as spooled:
        with zipfile.ZipFile(io.BytesIO(spooled.read())) as zf:
            assert sorted(zf.namelist()) == ["0.wav", "1.wav", "manifest.json"]
            assert zf.read("1.wav") == b"RIFF\x00"
            assert json.loads(zf.read("manifest.json"))["id"] == "two-items"


@pytest.mark.django_db
def test_an_archive_over_the_limit_is_refused_before_it_is_built(store: Path, settings) -> None:
    tenant = Tenant.objects.create(slug="big", name="big")
    batch = make_job(tenant, "too-big", expires_in_h=1, items=2)
    batch.items.update(output_bytes=600)
    settings.TTS_BATCH_ARCHIVE_MAX_BYTES = 1024
    with pytest.raises(PayloadTooLarge) as refused:
        services.archive(tenant, "too-big")
    assert refused.value.status == 413 and "one by one" in refused.value.message


@pytest.mark.django_db
def test_another_tenants_job_is_unknown(store: Path) -> None:
    owner = Tenant.objects.create(slug="owner", name="owner")
    other = Tenant.objects.create(slug="other", name="other")
    make_job(owner, "private-job", expires_in_h=1, items=1)
    for call in (lambda: services.archive(other, "private-job"), lambda: services.item_file(other, "private-job", 0),
                 lambda: services.job_with_items(other, "private-job"), lambda: services.cancel(other, "private-job"),
                 lambda: services.delete(other, "private-job")):
        with pytest.raises(services.UnknownBatch):
            call()
    assert services.item_file(owner, "private-job", 0)[0] == b"RIFF"
