"""Refinement's listening guard: Whisper (the optional recogniser) hears the voice speak fixed sentences."""
from __future__ import annotations

import numpy as np
import pytest

from synthesis.engines.base import Features
from synthesis.engines.kokoro import recogniser
from synthesis.engines.kokoro import refine as kokoro_refine
from synthesis.engines.kokoro.engine import KokoroEngine
from synthesis.engines.kokoro.envelope import prompt_envelopes
from synthesis.engines.kokoro.listening_guard import SENTENCES, TOLERANCE, ListeningGuard, listener
from synthesis.engines.kokoro.refine import refine
from tests.server import ENGINE_DIR

pytestmark = pytest.mark.skipif(not recogniser.weights_installed(),
                                reason="the recogniser (requirements-quality.txt) is not installed")

SR = 24000


@pytest.fixture(scope="module")
def engine() -> KokoroEngine:
    e = KokoroEngine(ENGINE_DIR, threads=2)
    e.load()
    return e


@pytest.fixture(scope="module")
def guard(engine: KokoroEngine, tmp_path_factory: pytest.TempPathFactory) -> ListeningGuard:
    hear = listener(tmp_path_factory.mktemp("whisper"))
    assert hear is not None
    return ListeningGuard(engine.synthesize, engine.sample_rate, hear)


def garbled(engine: KokoroEngine, name: str) -> Features:
    """A stock voice with noise on its style: about as long as the voice, but mumbled
    (Whisper heard nearly nothing of it when this test was written)."""
    features = engine.stock_features(name)
    noise = np.random.default_rng(8).standard_normal(256).astype(np.float32)
    return Features(meta=features.meta, arrays={**features.arrays, "style": features.arrays["style"] + 0.4 * noise})


@pytest.mark.parametrize(("start", "candidate", "passes"), [
    ({"zh": 0.10, "en": 0.0}, {"zh": 0.10, "en": 0.0}, True),
    ({"zh": 0.10, "en": 0.0}, {"zh": 0.10 + TOLERANCE - 0.01, "en": 0.05}, True),
    ({"zh": 0.10, "en": 0.0}, {"zh": 0.10 + TOLERANCE + 0.01, "en": 0.0}, False),
    ({"zh": 0.10, "en": 0.0}, {"zh": 0.0, "en": TOLERANCE + 0.01}, False),
    ({"zh": 0.30, "en": 0.2}, {"zh": 0.12, "en": 0.1}, True),
])
def test_a_candidate_may_be_heard_a_little_worse_than_the_start_in_each_language(
        start: dict[str, float], candidate: dict[str, float], passes: bool) -> None:
    problem = ListeningGuard(lambda text, features: np.zeros(1), SR, lambda a, r, lang: "").problem(start, candidate)
    assert (problem is None) == passes, problem


def test_the_recogniser_hears_a_stock_voice_in_both_languages(guard: ListeningGuard, engine: KokoroEngine) -> None:
    heard = guard.errors(engine.stock_features("jf_alpha"))
    assert set(heard) == set(SENTENCES) == {"zh", "en"}
    assert heard["zh"] <= 0.35 and heard["en"] <= 0.35, heard


def test_a_garbled_voice_is_refused_and_the_next_candidate_taken(guard: ListeningGuard, engine: KokoroEngine) -> None:
    start = engine.stock_features("jf_alpha")
    fine = engine.stock_features("jf_tebukuro")
    bad = garbled(engine, "jf_alpha")
    chosen, report = guard.pick(start, [bad, fine])
    assert chosen is fine
    assert report["checked"] == 2 and len(report["refused"]) == 1 and "heard" in report["refused"][0]
    assert set(report["start"]) == set(report["chosen"]) == {"zh", "en"}
    # nothing passes: nothing is chosen; stopped: nothing more is listened to
    assert guard.pick(start, [bad])[0] is None
    chosen, report = guard.pick(start, [fine], should_stop=lambda: True)
    assert chosen is None and report["checked"] == 0 and report["stopped"] is True


def test_refinement_reports_what_it_heard(engine: KokoroEngine) -> None:
    text = "Please water the plants today."
    prompt = engine.synthesize(text, engine.stock_features("jf_tebukuro"))
    refined = refine(engine, prompt, SR, text, engine.stock_features("jf_alpha"), budget_s=90, max_steps=6)
    assert refined is not None
    meta = refined.meta
    if meta["style_changed"]:  # what was kept was heard about as well as the start
        heard = meta["listened"]
        assert heard["checked"] >= 1 and "chosen" in heard
        for language, rate in heard["chosen"].items():
            assert rate <= heard["start"][language] + TOLERANCE
    else:
        assert meta["listened"] is None or "chosen" not in meta["listened"]
        np.testing.assert_array_equal(refined.arrays["style"], engine.stock_features("jf_alpha").arrays["style"])


@pytest.fixture(scope="module")
def converted(engine: KokoroEngine) -> Features:
    """A stock voice with an envelope conversion towards an English prompt (strength 2)."""
    stock = engine.stock_features("jf_alpha")
    prompt = engine.synthesize("The old lighthouse stood on the cliff for a century.", engine.stock_features("jf_tebukuro"))
    frames, _ = prompt_envelopes(prompt, SR, SR)
    envelope = {"strength": 2.0, "warp": 1.2, "top_hz": 7600.0, "near_db": 2.0, "far_db": 4.0, "language": "en"}
    return Features(meta={**stock.meta, "envelope": envelope}, arrays={**stock.arrays, "envelope_frames": frames})


def test_a_voice_heard_poorly_in_the_other_language_gets_a_gentler_conversion_there(
        guard: ListeningGuard, engine: KokoroEngine, converted: Features, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weaker strengths are listened to in the other language (Mandarin, for an English
    transcript) until one is heard well enough; else the one kept is heard best, and a
    stronger one wins ties."""
    monkeypatch.setattr(kokoro_refine, "OTHER_LANGUAGE_ERROR", -1.0)  # never well enough: every strength tried
    tuned, report = kokoro_refine._tune_other_language(guard, converted, None, lambda: False)
    chosen = report["other_language"]
    assert chosen["language"] == "zh" and set(report["start"]) == {"zh", "en"}
    assert set(chosen["heard"]) == {"1.0", "0.5", "0.0"}  # cross-language strength 1.0, then half, none
    heard = {float(k): v for k, v in chosen["heard"].items()}
    assert heard[1.0] == report["start"]["zh"]
    assert heard[chosen["strength"]] <= min(heard.values()) + kokoro_refine.OTHER_LANGUAGE_MARGIN
    assert engine.envelope_converter(tuned).other_language.strength == chosen["strength"]
    assert tuned.meta["envelope"]["strength"] == 2.0  # the transcript's language keeps its conversion
    # out of time: nothing more is listened to, the features stay
    same, _ = kokoro_refine._tune_other_language(guard, converted, {"start": {"zh": 0.5, "en": 0.0}}, lambda: True)
    assert same is converted


def test_the_strongest_conversion_heard_well_enough_is_kept(guard: ListeningGuard, engine: KokoroEngine,
                                                           converted: Features, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kokoro_refine, "OTHER_LANGUAGE_ERROR", 1.5)  # any half-way clear speech is enough
    tuned, report = kokoro_refine._tune_other_language(guard, converted, {"start": {"zh": 1.6, "en": 0.0}},
                                                       lambda: False)
    chosen = report["other_language"]
    assert chosen["strength"] == 0.5 and set(chosen["heard"]) == {"1.0", "0.5"}  # zero never tried
    assert chosen["heard"]["0.5"] <= 1.5
    assert engine.envelope_converter(tuned).other_language.strength == 0.5


def test_a_mandarin_voice_from_the_pack_is_heard_better_in_mandarin_than_the_bundled_ones(
        guard: ListeningGuard, engine: KokoroEngine) -> None:
    native = guard.errors(engine.stock_features("zf_xiaoxiao"))
    accented = guard.errors(engine.stock_features("jf_alpha"))
    assert native["zh"] <= 0.1 and native["zh"] < accented["zh"], (native, accented)
