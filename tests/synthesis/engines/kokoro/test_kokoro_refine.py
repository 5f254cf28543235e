"""Kokoro clone refinement: the style search, its intelligibility guard and the loudness gain."""
from __future__ import annotations

import numpy as np
import pytest

from synthesis.engines.base import Features, can_refine
from synthesis.engines.kokoro.engine import KokoroEngine
from synthesis.engines.kokoro.refine import (
    AXES_PER_HALF,
    MIN_GAIN,
    TARGET_LUFS_RANGE,
    guard_problem,
    objective_text,
    output_gain,
    refine,
    speech_stats,
    style_basis,
)
from tests.server import ENGINE_DIR

SR = 24000
TEXT = "Please water the plants today."


@pytest.fixture(scope="module")
def engine() -> KokoroEngine:
    e = KokoroEngine(ENGINE_DIR, threads=2)  # the e2e tests' engine directory: assembled once
    e.load()
    return e


@pytest.fixture(scope="module")
def speech(engine: KokoroEngine) -> np.ndarray:
    return engine.synthesize(TEXT, engine.stock_features("jf_alpha"))


def perturbed(engine: KokoroEngine, name: str, amount: float) -> Features:
    """A stock voice moved ``amount`` spreads along the first timbre and prosody axes."""
    features = engine.stock_features(name)
    basis = style_basis([engine._voices[n] for n in engine.stock_voices()])
    offset = amount * (basis.scales[0] * basis.directions[0] + basis.scales[AXES_PER_HALF] * basis.directions[AXES_PER_HALF])
    style = (features.arrays["style"] + offset[None, :]).astype(np.float32)
    return Features(meta=features.meta, arrays={**features.arrays, "style": style})


def test_kokoro_offers_refinement(engine: KokoroEngine) -> None:
    assert can_refine(engine)
    assert not can_refine(object())


def test_the_search_space_is_a_few_axes_per_style_half(engine: KokoroEngine) -> None:
    basis = style_basis([engine._voices[n] for n in engine.stock_voices()])
    assert basis.directions.shape == (2 * AXES_PER_HALF, 256)
    assert np.all(basis.scales > 0)
    timbre, prosody = basis.directions[:AXES_PER_HALF], basis.directions[AXES_PER_HALF:]
    assert not timbre[:, 128:].any() and not prosody[:, :128].any()
    np.testing.assert_allclose(timbre @ timbre.T, np.eye(AXES_PER_HALF), atol=1e-6)


def test_the_guard_passes_speech_and_rejects_garbled_audio(engine: KokoroEngine, speech: np.ndarray) -> None:
    start = speech_stats(speech, SR)
    assert start.active_s > 1.0 and start.voiced > 0.4 and start.flatness < 0.2
    assert guard_problem(start, start) is None
    assert guard_problem(start, speech_stats(engine.synthesize(TEXT, engine.stock_features("jm_kumo")), SR)) is None
    # hiss with the speech's envelope: same length, no voicing, flat spectrum
    rng = np.random.default_rng(0)
    envelope = np.convolve(np.abs(speech), np.ones(480) / 480, mode="same")
    hiss = (rng.standard_normal(len(speech)) * envelope * 1.5).astype(np.float32)
    assert guard_problem(start, speech_stats(hiss, SR)) is not None
    # dragged out: twice as long
    assert "duration" in guard_problem(start, speech_stats(np.concatenate([speech, speech]), SR))
    assert guard_problem(start, speech_stats(np.zeros(SR, np.float32), SR)) == "no speech"
    # a real garbled candidate: the style pushed far out of the voices' range
    features = engine.stock_features("jf_alpha")
    style = features.arrays["style"] + 1.2 * rng.standard_normal(256).astype(np.float32)[None, :]
    garbled = engine.synthesize(TEXT, Features(meta=features.meta, arrays={**features.arrays, "style": style}))
    assert guard_problem(start, speech_stats(garbled, SR)) is not None


def test_refinement_does_not_lower_similarity(engine: KokoroEngine, speech: np.ndarray) -> None:
    start = perturbed(engine, "jf_alpha", 2.0)
    refined = refine(engine, speech, SR, TEXT, start, budget_s=120, max_steps=8)
    assert refined is not None
    meta = refined.meta
    assert meta["refined"] is True and meta["engine"] == "kokoro" and meta["feature_version"] == engine.feature_version
    assert meta["sim_after"] >= meta["sim_before"]
    if meta["style_changed"]:
        assert meta["sim_after"] - meta["sim_before"] >= MIN_GAIN - 1e-4
    else:
        np.testing.assert_array_equal(refined.arrays["style"], start.arrays["style"])
    assert meta["steps"] >= 1 and meta["seconds"] > 0
    engine.check_features(refined)  # valid features of this engine
    audio = engine.synthesize("Hello.", Features.from_bytes(refined.to_bytes()))
    assert len(audio) > SR // 4


def test_refinement_stops_when_asked_and_when_out_of_time(engine: KokoroEngine, speech: np.ndarray) -> None:
    start = engine.stock_features("jf_alpha")
    stopped = engine.refine_features(speech, SR, TEXT, start, budget_s=60, should_stop=lambda: True)
    assert stopped is not None and stopped.meta["steps"] == 0 and stopped.meta["style_changed"] is False
    late = engine.refine_features(speech, SR, TEXT, start, budget_s=0.01)
    assert late is not None and late.meta["steps"] == 0


def test_nothing_to_refine_without_a_transcript(engine: KokoroEngine, speech: np.ndarray) -> None:
    assert engine.refine_features(speech, SR, "...", engine.stock_features("jf_alpha"), budget_s=5) is None


def test_the_loudness_gain_matches_the_prompt_and_is_applied(engine: KokoroEngine, speech: np.ndarray) -> None:
    quiet = speech * 0.5  # 6 dB down
    refined = engine.refine_features(quiet, SR, TEXT, engine.stock_features("jf_alpha"), budget_s=0.01)
    assert refined is not None
    loud = refined.meta["loudness"]
    assert loud["prompt_lufs"] == pytest.approx(loud["voice_lufs"] - 6.02, abs=0.3)
    target = min(max(loud["prompt_lufs"], TARGET_LUFS_RANGE[0]), TARGET_LUFS_RANGE[1])
    assert loud["target_lufs"] == pytest.approx(target, abs=0.01)
    gain = 10 ** ((target - loud["voice_lufs"]) / 20)
    assert refined.meta["gain"] == pytest.approx(gain, rel=0.01) and gain < 1
    plain = engine.synthesize(TEXT, engine.stock_features("jf_alpha"))
    softer = engine.synthesize(TEXT, refined)
    assert np.sqrt(np.mean(softer**2)) == pytest.approx(gain * np.sqrt(np.mean(plain**2)), rel=0.05)
    # a prompt far louder than any target gets the loudest target, not its own level
    blaring = engine.refine_features(np.clip(speech * 8, -1, 1), SR, TEXT, engine.stock_features("jf_alpha"),
                                     budget_s=0.01)
    assert blaring.meta["loudness"]["target_lufs"] == TARGET_LUFS_RANGE[1]


@pytest.mark.parametrize("gain", [0.0, 10.0, "2", True, float("nan")])
def test_a_bad_gain_is_refused(gain: object) -> None:
    with pytest.raises(ValueError, match="gain"):
        output_gain({"gain": gain})
    assert output_gain({}) == 1.0


def test_the_objective_is_the_first_sentences_of_the_transcript() -> None:
    long = "One two three. " * 40
    picked = objective_text(long, limit=10)
    assert picked.startswith("One two three.") and len(picked) < 60
    assert objective_text("只有一句很长的话" * 20, limit=5)  # at least one sentence


def test_refinement_runs_the_model_only_after_live_streams_pause(engine: KokoroEngine,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A live stream that has just used the model keeps it: a background run waits until no
    live run has happened for BACKGROUND_YIELD_S (2 s here, longer than any run), while
    live runs go ahead at once."""
    import threading
    import time

    from synthesis.engines.kokoro import engine as kokoro

    monkeypatch.setattr(kokoro, "BACKGROUND_YIELD_S", 2.0)
    phonemes = engine._g2p.phonemize("好的。")
    style = engine.stock_features(engine.stock_voices()[0]).arrays["style"]
    background_done: list[float] = []

    def background() -> None:
        engine._background.active = True
        try:
            engine._infer(phonemes, style, 1.0)
            background_done.append(time.monotonic())
        finally:
            engine._background.active = False

    engine._infer(phonemes, style, 1.0)
    worker = threading.Thread(target=background)
    worker.start()
    time.sleep(0.1)
    started = time.monotonic()
    engine._infer(phonemes, style, 1.0)  # live, while the background run waits
    live_seconds = time.monotonic() - started
    live_done = engine._last_foreground
    worker.join(30)
    assert background_done, "the background run never finished"
    assert live_seconds < 2.0, "the live run waited for the background one"
    assert background_done[0] >= live_done + 2.0
    assert engine._foreground_runs == 0


def test_a_live_run_ends_a_background_run_in_flight_which_is_run_again_after(engine: KokoroEngine) -> None:
    """Batch items and refinements run behind streams: a stream that needs the model while a
    long background run holds it does not wait for that run; the background run is ended
    (within one operator), then run again whole once the streams are quiet."""
    import threading
    import time

    long_phonemes = engine._g2p.phonemize("这是一个很长的句子，用来让后台的模型运行持续好几秒钟，直到有直播请求到来为止。" * 2)
    short = engine._g2p.phonemize("好的。")
    style = engine.stock_features(engine.stock_voices()[0]).arrays["style"]
    engine._infer(short, style, 1.0)
    started = time.monotonic()
    alone = engine._infer(long_phonemes, style, 1.0)
    long_seconds = time.monotonic() - started
    time.sleep(0.6)  # past BACKGROUND_YIELD_S: the background run starts at once

    results: list[np.ndarray] = []

    def background() -> None:
        with engine.background_work():
            results.append(engine._infer(long_phonemes, style, 1.0))

    before = engine.preempted_runs
    worker = threading.Thread(target=background)
    worker.start()
    time.sleep(min(0.3, long_seconds / 4))  # the background run is in flight
    started = time.monotonic()
    engine._infer(short, style, 1.0)
    live_seconds = time.monotonic() - started
    worker.join(60)
    assert engine.preempted_runs == before + 1
    assert live_seconds < 0.6 * long_seconds + 0.5, (live_seconds, long_seconds)
    assert results and np.array_equal(results[0], alone)  # run again, whole
    assert engine._foreground_runs == 0 and not engine._background_runs
