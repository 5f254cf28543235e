"""Background refinement, platform side: the atomic swap, failures, removal, queueing, recovery."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from synthesis.engines.base import Features
from tests.e2e.support import wav_bytes
from voices import refine, services
from voices.feature_store import get_feature_store
from voices.models import Tenant, Voice
from workers import backend, refine_queue


class FakeEngine:
    name = "fake"
    feature_version = "fake-1"

    def __init__(self, result=None, error: Exception | None = None, during=None) -> None:
        self.result, self.error, self.during = result, error, during
        self.calls: list[tuple[int, str]] = []

    def refine_features(self, audio, sample_rate, text, features, budget_s, should_stop=None):
        self.calls.append((sample_rate, text))
        assert audio.ndim == 1 and budget_s > 0 and features.meta["quick"] is True
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def store(settings, tmp_path: Path) -> Iterator[Path]:
    settings.TTS_FEATURE_STORE = str(tmp_path)
    settings.TTS_REFINE = True
    settings.TTS_REFINE_SECONDS = 5.0
    get_feature_store.cache_clear()  # the store is chosen once per process
    yield tmp_path
    get_feature_store.cache_clear()


def use_engine(monkeypatch: pytest.MonkeyPatch, engine: object) -> None:
    monkeypatch.setattr("synthesis.engines.registry.get_loaded_engine", lambda: engine)


def refining_voice(prompt_id: str = "v") -> Voice:
    tenant, _ = Tenant.objects.get_or_create(slug="refine-unit", defaults={"name": "refine unit"})
    quick = Features(meta={"quick": True}, arrays={"style": np.zeros(4, np.float32)})
    audio = wav_bytes(0.3 * np.sin(np.linspace(0, 2000, 32000)).astype(np.float32), 16000)
    blobs = services.store_blobs(tenant, quick.to_bytes(), audio)
    return services.insert_voice(tenant, prompt_id, {"prompt_text": "hello there", "engine": "fake",
                                                     "feature_version": "fake-1", "prompt_sample_rate": 16000,
                                                     "state": Voice.State.REFINING, "metrics": {"similarity": 0.8}},
                                 blobs)


def refined_features() -> Features:
    return Features(meta={"quick": False, "refined": True, "sim_before": 0.7, "sim_after": 0.75},
                    arrays={"style": np.ones(4, np.float32)})


def blob_count(root: Path) -> int:
    return len([p for p in root.rglob("*.npz")])


@pytest.mark.django_db
def test_refined_features_are_swapped_in(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    voice = refining_voice()
    engine = FakeEngine(result=refined_features())
    use_engine(monkeypatch, engine)
    monkeypatch.setattr(refine, "_OLD_BLOB_GRACE_S", 0.0)
    assert refine.refine_voice(voice.pk, voice.features_key, voice.features_sha256) == "swapped"
    assert engine.calls == [(16000, "hello there")]
    after = Voice.objects.get(pk=voice.pk)
    assert after.state == Voice.State.READY
    assert after.features_key != voice.features_key and after.features_sha256 != voice.features_sha256
    assert after.metrics["sim_after"] == 0.75 and after.metrics["refined"] is True
    loaded = services.load_features_by_key(after.features_key, after.features_sha256)
    np.testing.assert_array_equal(loaded.arrays["style"], np.ones(4, np.float32))
    get_feature_store().get(after.features_key, after.features_sha256)  # stored, checksum right
    for _ in range(100):  # the old blob goes after a grace period (0 here)
        if blob_count(store) == 1:
            break
        threading.Event().wait(0.02)
    assert blob_count(store) == 1


@pytest.mark.django_db
def test_a_voice_replaced_during_the_search_keeps_its_new_features(store: Path, monkeypatch) -> None:
    voice = refining_voice()

    def reclone() -> None:  # the voice is removed and cloned again while the search runs
        services.remove_voice(voice.tenant, "v")
        refining_voice()

    use_engine(monkeypatch, FakeEngine(result=refined_features(), during=reclone))
    assert refine.refine_voice(voice.pk, voice.features_key, voice.features_sha256) == "gone"
    current = Voice.objects.get(prompt_id="v")
    assert current.state == Voice.State.REFINING and "sim_after" not in current.metrics
    assert blob_count(store) == 1  # only the new clone's quick features: the refined blob was dropped


@pytest.mark.django_db
def test_a_removed_voice_is_not_refined(store: Path, monkeypatch) -> None:
    voice = refining_voice()
    services.remove_voice(voice.tenant, "v")
    engine = FakeEngine(result=refined_features())
    use_engine(monkeypatch, engine)
    assert refine.refine_voice(voice.pk, voice.features_key, voice.features_sha256) == "gone"
    assert engine.calls == []


@pytest.mark.django_db
@pytest.mark.parametrize("engine, outcome", [
    (FakeEngine(error=RuntimeError("boom")), "failed"),
    (FakeEngine(result=None), "unchanged"),
    (object(), "unsupported"),
])
def test_failures_leave_the_quick_features_ready(store: Path, monkeypatch, engine: object, outcome: str) -> None:
    voice = refining_voice()
    use_engine(monkeypatch, engine)
    assert refine.refine_voice(voice.pk, voice.features_key, voice.features_sha256) == outcome
    after = Voice.objects.get(pk=voice.pk)
    assert after.state == Voice.State.READY and after.features_sha256 == voice.features_sha256
    assert blob_count(store) == 1


@pytest.mark.django_db
def test_a_full_queue_leaves_the_voice_ready_at_once(store: Path, monkeypatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(refine, "refine_voice", lambda *args: release.wait(10))
    monkeypatch.setattr(refine_queue, "close_old_connections", lambda: None)
    one_running = refine_queue.RefineQueue(max_pending=0)  # the running one only
    monkeypatch.setattr(backend, "_refine_queue", lambda: one_running)
    first, second = refining_voice("a"), refining_voice("b")
    try:
        refine.schedule(first.pk, first.features_key, first.features_sha256)
        refine.schedule(second.pk, second.features_key, second.features_sha256)
        assert Voice.objects.get(pk=first.pk).state == Voice.State.REFINING
        assert Voice.objects.get(pk=second.pk).state == Voice.State.READY
    finally:
        release.set()


@pytest.mark.django_db
def test_initial_state_follows_the_setting_and_the_engine(store: Path, settings) -> None:
    assert refine.initial_state(FakeEngine()) == Voice.State.REFINING
    assert refine.initial_state(object()) == Voice.State.READY
    settings.TTS_REFINE = False
    assert refine.initial_state(FakeEngine()) == Voice.State.READY


@pytest.mark.django_db
def test_voices_left_refining_are_recovered_as_ready(store: Path) -> None:
    old, recent = refining_voice("old"), refining_voice("recent")
    Voice.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(hours=2))
    assert refine.recover_stuck(older_than_s=3600) == 1
    assert Voice.objects.get(pk=old.pk).state == Voice.State.READY
    assert Voice.objects.get(pk=recent.pk).state == Voice.State.REFINING
    assert refine.recover_stuck() == 1
    assert not Voice.objects.filter(state=Voice.State.REFINING).exists()
