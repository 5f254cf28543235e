"""The Kokoro engine, for real: model assembly, G2P, ONNX runs, cloning (slow-ish, ~1 min)."""
from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr

from synthesis.engines.base import Engine, Features, StopSignal, StreamStopped
from synthesis.engines.kokoro.engine import (
    CROSS_LANGUAGE_RATE,
    CROSS_LANGUAGE_STRENGTH,
    MAX_TOKENS,
    NOT_CLONED,
    STYLE_SHAPE,
    KokoroEngine,
    apply_gain,
    execution_providers,
    split_phonemes,
)
from synthesis.engines.kokoro.envelope import BANDS as ENVELOPE_BANDS
from synthesis.engines.kokoro.envelope import EnvelopeConverter, prompt_envelopes
from synthesis.engines.kokoro.pitch import median_f0
from synthesis.engines.kokoro.speaker_embedding import cosine_similarity
from synthesis.engines.kokoro.timbre import BANDS as TIMBRE_BANDS
from synthesis.engines.kokoro.timbre import Equaliser, long_term_spectrum

SR = 24000
VOICES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]  # bundled with the model
#: from the voice pack (synthesis/engines/kokoro/voice_pack.py) that `make install` writes
MANDARIN_VOICES = ["zf_xiaobei", "zf_xiaoni", "zf_xiaoxiao", "zf_xiaoyi", "zm_yunjian", "zm_yunxi", "zm_yunxia",
                   "zm_yunyang"]
#: voices cloned from their own speech: bundled and pack voices, Mandarin and English, both sexes
CLONED = ["jf_alpha", "jm_kumo", "zf_xiaobei", "zm_yunyang", "af_heart", "bm_george"]
#: differs from the engine's reference sentences, so cloning is not matching identical audio
CLONE_TEXT = "他昨天去图书馆借了书。"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kokoro-data")


@pytest.fixture(scope="module")
def engine(data_dir: Path) -> KokoroEngine:
    e = KokoroEngine(data_dir, threads=2, concurrency=1)
    e.load()
    return e


def seconds(audio: np.ndarray) -> float:
    return len(audio) / SR


def assert_speech(audio: np.ndarray) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio))
    assert np.abs(audio).max() < 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.02  # not silence
    assert median_f0(audio, SR) is not None  # voiced


def with_meta(features: Features, **meta: object) -> Features:
    return Features(meta={**features.meta, **meta}, arrays=dict(features.arrays))


def test_loads_once_and_implements_the_protocol(engine: KokoroEngine, data_dir: Path) -> None:
    assert isinstance(engine, Engine)
    assert engine.loaded and engine.warm
    assert (data_dir / "models" / "kokoro-v1.0.int8.onnx").stat().st_size > 90_000_000
    assert not [p for p in (data_dir / "models").iterdir() if p.name.startswith(".")]  # no temp files left
    # none when make install's table (synthesis/engines/kokoro/voice_embeddings.py) is current
    assert len(list((data_dir / "cache").glob("kokoro-voice-embeddings-*.npy"))) <= 1
    assert engine.reference_table is not None
    started = time.monotonic()
    engine.load()
    assert time.monotonic() - started < 0.01
    assert set(VOICES) | set(MANDARIN_VOICES) <= set(engine.stock_voices())
    assert len(engine.stock_voices()) == 54
    assert engine.capabilities.languages == ("zh", "en")
    assert engine.sample_rate == SR


def test_chinese(engine: KokoroEngine) -> None:
    text = "今天的天气非常好，我们一起去公园散步吧。"
    audio = engine.synthesize(text, engine.stock_features("jf_alpha"))
    assert_speech(audio)
    chars = 18
    assert 0.1 * chars < seconds(audio) < 0.5 * chars


def test_english(engine: KokoroEngine) -> None:
    text = "This is a short English sentence for the test."
    audio = engine.synthesize(text, engine.stock_features("jm_kumo"))
    assert_speech(audio)
    words = 9
    assert 0.15 * words < seconds(audio) < 0.8 * words


def test_mixed_keeps_the_english_words(engine: KokoroEngine) -> None:
    features = engine.stock_features("jf_nezumi")
    mixed = engine.synthesize("我用ChatGPT写code。", features)
    chinese_only = engine.synthesize("我用写。", features)
    assert_speech(mixed)
    # "ChatGPT" and "code" are spoken, not dropped: they add at least ~0.6 s
    assert seconds(mixed) > seconds(chinese_only) + 0.6


def test_stream_speaks_first_clause_before_the_text_ends(engine: KokoroEngine) -> None:
    inbox: queue.Queue[str | None] = queue.Queue()
    first_audio = threading.Event()
    first_before_last = []

    def clauses() -> Iterator[str]:
        while (clause := inbox.get()) is not None:
            yield clause

    def client() -> None:
        inbox.put("你好，")
        first_before_last.append(first_audio.wait(timeout=60))
        inbox.put("this is the last clause.")
        inbox.put(None)

    thread = threading.Thread(target=client)
    thread.start()
    chunks = []
    for audio in engine.stream(clauses(), engine.stock_features("jf_alpha"), None):
        first_audio.set()
        chunks.append(audio)
    thread.join()
    assert first_before_last == [True]
    assert len(chunks) == 2
    for chunk in chunks:
        assert_speech(chunk)
        # edges are faded: consecutive clauses join without a click
        assert abs(chunk[0]) < 1e-3 and abs(chunk[-1]) < 1e-3


def test_a_stop_aborts_the_model_run_in_flight(engine: KokoroEngine) -> None:
    """A client who leaves mid-clause frees the engine within one operator, not one clause."""
    clause = "这是一个很长的句子，用来测试在模型运行的过程中停止合成，" * 3
    features = engine.stock_features("jf_alpha")
    started = time.monotonic()
    whole = list(engine.stream([clause], features, None))
    run_s = time.monotonic() - started
    assert whole and run_s > 0.5  # long enough for a stop to land mid-run

    stop = StopSignal()
    timer = threading.Timer(0.1, stop.set)
    started = time.monotonic()
    timer.start()
    with pytest.raises(StreamStopped):
        list(engine.stream([clause], features, None, stop=stop))
    stopped_s = time.monotonic() - started
    assert stopped_s < 0.1 + max(0.25, 0.3 * run_s), (stopped_s, run_s)
    # The engine is fine afterwards: the next stream speaks.
    assert_speech(np.concatenate(list(engine.stream(["好的。"], features, None, stop=StopSignal()))))


def test_a_stream_stopped_while_queued_for_the_model_leaves_the_queue(data_dir: Path) -> None:
    single = KokoroEngine(data_dir, threads=1, concurrency=1)
    single.load()
    features = single.stock_features("jf_alpha")
    busy = threading.Thread(target=lambda: list(single.stream(["这是一个很长的句子，用来占住模型。" * 3], features, None)))
    busy.start()
    time.sleep(0.05)
    stop = StopSignal()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(StreamStopped):
        list(single.stream(["你好。"], features, None, stop=stop))
    waited = time.monotonic() - started
    still_busy = busy.is_alive()
    busy.join()
    assert still_busy, "the other stream ended before the stop; the test proves nothing"
    assert waited < 0.5, waited


def test_empty_clauses_yield_nothing(engine: KokoroEngine) -> None:
    assert list(engine.stream(["", "   ", "，。！"], engine.stock_features("jf_alpha"), None)) == []


def test_cloning_picks_the_prompt_voice_and_its_pitch(engine: KokoroEngine) -> None:
    correct = []
    for voice in CLONED:
        prompt = engine.synthesize(CLONE_TEXT, engine.stock_features(voice))
        prompt_16k = soxr.resample(prompt, SR, 16000)  # prompts usually arrive at another rate
        features = engine.extract_features(prompt_16k, 16000, CLONE_TEXT)
        weights = features.meta["voice_weights"]
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-3)
        assert features.arrays["style"].shape == STYLE_SHAPE
        assert features.arrays["style"].dtype == np.float32
        assert features.arrays["prompt_embedding"].shape == (256,)
        assert 0.0 < features.meta["similarity"] <= 1.0
        if max(weights, key=weights.get) == voice:
            correct.append(voice)
            assert features.meta["pitch_factor"] == pytest.approx(1.0, abs=0.1), (voice, features.meta)
            assert features.meta["speed"] == pytest.approx(1.0, abs=0.1), (voice, features.meta)
    assert len(correct) >= 5, correct


@pytest.mark.parametrize("shift", [1.2, 0.65])
def test_cloned_voice_speaks_at_the_prompt_pitch(engine: KokoroEngine, shift: float) -> None:
    # A voice pitched between the stock ones: whichever voice the embedding picks,
    # the pitch factor must bring the clone to the prompt's median F0 (0.65: below the 0.75
    # that resampling allowed, a low female voice).
    prompt = engine.synthesize(CLONE_TEXT, with_meta(engine.stock_features("jf_gongitsune"), pitch_factor=shift))
    features = engine.extract_features(prompt, SR, CLONE_TEXT)
    clone = engine.synthesize(CLONE_TEXT, features)
    assert median_f0(clone, SR) == pytest.approx(median_f0(prompt, SR), rel=0.08), features.meta


@pytest.mark.parametrize("pitch_shift", ["f0", "resample"])
def test_pitch_shift_keeps_duration(engine: KokoroEngine, pitch_shift: str) -> None:
    text = "我们来听一听音调的变化。"
    base_features = engine.stock_features("jf_tebukuro")
    assert base_features.meta["pitch_shift"] == "f0"
    base = engine.synthesize(text, base_features)
    shifted = engine.synthesize(text, with_meta(base_features, pitch_factor=1.25, pitch_shift=pitch_shift))
    assert median_f0(shifted, SR) / median_f0(base, SR) == pytest.approx(1.25, rel=0.08)
    if pitch_shift == "f0":  # the model's own timing, untouched
        assert seconds(shifted) == pytest.approx(seconds(base), abs=0.03)
    else:
        # Kokoro rounds each phoneme's duration to whole frames after dividing by its speed
        # input, so speed v gives 1/v the duration only to within ~±6%.
        assert seconds(shifted) / seconds(base) == pytest.approx(1.0, abs=0.08)


def test_voices_cloned_before_the_f0_shift_speak_as_before(engine: KokoroEngine) -> None:
    # No pitch_shift in the features: resampled, so the formants move with the pitch (the
    # long-term spectrum's centroid rises with it), where the F0 curve keeps them.
    text = "我们来听一听音调的变化。"
    features = engine.stock_features("jf_alpha")
    old = Features(meta={k: v for k, v in with_meta(features, pitch_factor=1.25).meta.items() if k != "pitch_shift"},
                   arrays=features.arrays)
    base, through_f0, resampled = (engine.synthesize(text, f) for f in (features, with_meta(features, pitch_factor=1.25),
                                                                         old))

    def centroid(audio: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(audio)) ** 2
        return float((np.fft.rfftfreq(len(audio), 1 / SR) * spectrum).sum() / spectrum.sum())

    assert centroid(resampled) / centroid(base) > 1.12
    assert centroid(through_f0) / centroid(base) < 1.08


def test_instruct_volume_never_clips(engine: KokoroEngine) -> None:
    features = engine.stock_features("jm_kumo")
    loud = engine.synthesize("大声说话。", features, "very loud")
    quiet = engine.synthesize("大声说话。", features, "whisper")
    assert np.abs(loud).max() < 1.0
    assert np.sqrt(np.mean(quiet**2)) < 0.6 * np.sqrt(np.mean(loud**2))


def test_limiter() -> None:
    t = np.arange(SR) / SR
    sine = (0.8 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = apply_gain(sine, 3.0)
    assert out.dtype == np.float32 and np.abs(out).max() < 0.995
    assert np.all(np.diff(np.sort(out)) >= 0)  # monotonic mapping: no fold-over
    assert np.array_equal(apply_gain(sine * 0.5, 1.0), sine * 0.5)


def test_too_long_clause_is_split_not_truncated(engine: KokoroEngine) -> None:
    words = ("the quick brown fox jumps over the lazy dog and runs around the old farm house " * 6 + "and back").split()
    clause = " ".join(words) + "."
    phonemes = engine._g2p.phonemize(clause)
    assert len(phonemes) > MAX_TOKENS
    chunks = split_phonemes(phonemes)
    assert len(chunks) >= 2 and all(len(c) <= MAX_TOKENS for c in chunks)
    assert "".join(chunks).replace(" ", "") == phonemes.replace(" ", "")
    audio = list(engine.stream([clause], engine.stock_features("jf_alpha"), "2x speed"))
    assert len(audio) == len(chunks)
    # all words are spoken: at 2x speed still well over 0.1 s per word
    assert sum(map(seconds, audio)) > 0.1 * len(words)


def test_split_phonemes_hard_cases() -> None:
    assert split_phonemes("") == []
    assert split_phonemes("a" * 1200) == ["a" * 510, "a" * 510, "a" * 180]
    pieces = split_phonemes(", ".join(["ab cd"] * 200), limit=50)
    assert all(len(p) <= 50 for p in pieces)


def test_features_round_trip(engine: KokoroEngine) -> None:
    features = engine.stock_features("jf_alpha")
    again = Features.from_bytes(features.to_bytes())
    assert again.meta == features.meta
    assert np.array_equal(again.arrays["style"], features.arrays["style"])
    assert again.arrays["style"].dtype == np.float32
    engine.check_features(again)


GOOD_ENVELOPE = {"strength": 1.5, "warp": 1.1, "top_hz": 7600.0, "near_db": 2.0, "far_db": 4.0}


def test_valid_envelope_features_are_accepted(engine: KokoroEngine) -> None:
    good = engine.stock_features("jf_alpha")
    frames = np.random.default_rng(0).normal(0, 6, (50, ENVELOPE_BANDS)).astype(np.float32)
    features = Features(meta={**good.meta, "envelope": dict(GOOD_ENVELOPE)},
                        arrays={**good.arrays, "envelope_frames": frames})
    again = Features.from_bytes(features.to_bytes())
    engine.check_features(again)
    assert_speech(engine.synthesize("你好，世界。", again))


@pytest.mark.parametrize(
    "change",
    [
        {"arrays": {"style": np.zeros((510, 128), np.float32)}},
        {"arrays": {"style": np.zeros(STYLE_SHAPE, np.float64)}},
        {"arrays": {"style": np.full(STYLE_SHAPE, np.nan, np.float32)}},
        {"arrays": {}},
        {"arrays": {"style": np.zeros(STYLE_SHAPE, np.float32), "prompt_embedding": np.zeros(3)}},
        {"meta": {"engine": "other"}},
        {"meta": {"feature_version": "kokoro-0"}},
        {"meta": {"pitch_factor": 3.0}},
        {"meta": {"speed": "fast"}},
        {"meta": {"pitch_shift": "formant"}},
        {"meta": {"transcript_language": "fr"}},
        {"meta": {"transcript_language": 1}},
        {"arrays": {"style": np.zeros(STYLE_SHAPE, np.float32), "timbre_db": np.zeros(5, np.float32)}},
        {"arrays": {"style": np.zeros(STYLE_SHAPE, np.float32), "timbre_db": np.full(TIMBRE_BANDS, 40.0, np.float32)}},
        {"arrays": {"style": np.zeros(STYLE_SHAPE, np.float32), "timbre_db": np.full(TIMBRE_BANDS, np.nan, np.float32)}},
        # envelope conversion: parameters and frames go together, each checked
        {"meta": {"envelope": dict(GOOD_ENVELOPE)}},
        {"arrays": {"style": np.zeros(STYLE_SHAPE, np.float32), "envelope_frames": np.zeros((50, ENVELOPE_BANDS))}},
        *({"meta": {"envelope": {**GOOD_ENVELOPE, **bad}},
           "arrays": {"style": np.zeros(STYLE_SHAPE, np.float32), "envelope_frames": np.zeros((50, ENVELOPE_BANDS))}}
          for bad in ({"warp": 2.0}, {"strength": -1}, {"strength": "1"}, {"near_db": 5.0, "far_db": 1.0},
                      {"top_hz": None}, {"language": "fr"}, {"language": "en", "other_strength": 2.5},
                      {"language": "en", "other_strength": True}, {"language": "en", "other_strength": "0"})),
        *({"meta": {"envelope": dict(GOOD_ENVELOPE)}, "arrays": {"style": np.zeros(STYLE_SHAPE, np.float32),
                                                                "envelope_frames": frames}}
          for frames in (np.zeros((50, ENVELOPE_BANDS - 1)), np.zeros((2, ENVELOPE_BANDS)),
                         np.full((50, ENVELOPE_BANDS), np.inf), np.zeros((50, ENVELOPE_BANDS), np.int16))),
    ],
)
def test_invalid_features_raise(engine: KokoroEngine, change: dict) -> None:
    good = engine.stock_features("jf_alpha")
    bad = Features(meta={**good.meta, **change.get("meta", {})}, arrays=change.get("arrays", good.arrays))
    with pytest.raises(ValueError):
        engine.stream(["你好"], bad, None)
    with pytest.raises(ValueError):
        engine.synthesize("你好", bad)


@pytest.mark.parametrize(
    "audio, sr",
    [
        (np.zeros(24000, np.float32), 24000),  # silent
        (np.full(1000, 0.1, np.float32), 24000),  # too short
        (np.full(24000, np.nan, np.float32), 24000),
        (np.zeros((2, 24000), np.float32), 24000),  # not mono
        (np.zeros(24000, np.int16), 24000),
    ],
)
def test_bad_prompt_audio_raises(engine: KokoroEngine, audio: np.ndarray, sr: int) -> None:
    with pytest.raises(ValueError):
        engine.extract_features(audio, sr, "你好")


def test_unknown_stock_voice(engine: KokoroEngine) -> None:
    with pytest.raises(ValueError):
        engine.stock_features("xx_nobody")


def test_second_engine_reuses_model_and_reference_cache(engine: KokoroEngine, data_dir: Path) -> None:
    def caches() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (data_dir / "cache").glob("kokoro-voice-embeddings-*.npy")}

    before = caches()
    other = KokoroEngine(data_dir, threads=1)
    other.load()
    assert caches() == before  # the install-time table or the one cached here: nothing recomputed
    for name in VOICES:
        assert np.array_equal(other._voice_embeddings[name], engine._voice_embeddings[name])


def test_the_clause_cost_is_measured_once_per_engine_directory(engine: KokoroEngine, data_dir: Path) -> None:
    """Four model runs at every load add seconds to each server start: the second engine on
    the same directory, provider and thread count reads the cost the first one measured."""
    files = [p for p in sorted((data_dir / "cache").glob("kokoro-clause-cost-*.json"))
             if json.loads(p.read_text())["key"]["threads"] == engine.threads]
    assert len(files) == 1, "the first load keeps its measurement"
    overhead, per_unit = engine.clause_cost
    assert overhead > 0 and per_unit > 0
    stamps = {p: p.stat().st_mtime_ns for p in files}
    again = KokoroEngine(data_dir, threads=2, concurrency=1)
    again.load()
    assert again.clause_cost == engine.clause_cost
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    # a damaged file is measured again, not trusted
    for p in files:
        p.write_text("{not json")
    third = KokoroEngine(data_dir, threads=2, concurrency=1)
    third.load()
    assert third.clause_cost is not None and third.clause_cost[1] > 0
    assert all(json.loads(p.read_text())["cost"] == list(third.clause_cost) for p in files)


def test_cloning_matches_a_coloured_prompts_timbre_where_that_raises_similarity(engine: KokoroEngine) -> None:
    """A stock voice heard through a coloured channel (bass cut, presence boost): the clone
    takes a correction that follows the colouring, keeps it only because it is more similar
    to the prompt, and speaks with a long-term spectrum closer to the prompt's."""
    colour = np.interp(np.arange(TIMBRE_BANDS), [0, 8, 18, 27], [-12.0, -4.0, 8.0, 4.0])
    colour -= colour.mean()
    stock = engine.stock_features("jm_kumo")
    prompt = Equaliser(colour, SR)(engine.synthesize(CLONE_TEXT, stock))
    features = engine.extract_features(prompt, SR, CLONE_TEXT)
    measured = features.meta["timbre"]
    assert measured["strength"] > 0, measured
    assert measured["sim"] >= measured["sim_plain"] + 0.005, measured
    gains = features.arrays["timbre_db"]
    assert gains.shape == (TIMBRE_BANDS,) and np.corrcoef(gains, colour)[0, 1] > 0.7, gains
    engine.check_features(Features.from_bytes(features.to_bytes()))

    held_out = "我们明天早上九点在学校门口见面。"
    plain = Features(meta=dict(features.meta), arrays={k: v for k, v in features.arrays.items() if k != "timbre_db"})
    target = long_term_spectrum(prompt, SR)
    distance = {name: np.abs(long_term_spectrum(engine.synthesize(held_out, f), SR) - target).mean()
                for name, f in (("corrected", features), ("plain", plain))}
    assert distance["corrected"] < 0.75 * distance["plain"], distance


def test_cloning_a_plain_stock_voice_needs_no_timbre_correction(engine: KokoroEngine) -> None:
    prompt = engine.synthesize(CLONE_TEXT, engine.stock_features("jf_alpha"))
    features = engine.extract_features(prompt, SR, CLONE_TEXT)
    gains = features.arrays.get("timbre_db")
    assert gains is None or np.abs(gains).max() < 6.0, gains


def test_lone_voices_tried_are_the_blends_most_similar_members() -> None:
    scores = np.array([0.50, 0.62, 0.55, 0.40, 0.60])
    blend = np.array([0.0, 0.5, 0.2, 0.0, 0.3])
    lone = KokoroEngine._lone_voices(blend, scores)
    assert [int(np.argmax(w)) for w in lone] == [1, 4]  # voice 2 is in the blend but less similar
    assert all(w.sum() == 1.0 and np.count_nonzero(w) == 1 for w in lone)
    assert KokoroEngine._lone_voices(np.array([0.0, 1.0, 0.0, 0.0, 0.0]), scores) == []  # already one voice


def test_cloning_follows_a_prompt_whose_formants_are_moved(engine: KokoroEngine) -> None:
    """A stock voice with its formants 18 % higher (a shorter vocal tract, pitch kept): the
    clone converts its envelopes (warped up), and a sentence the prompt never said comes out
    more similar to the prompt than the same clone without the conversion."""
    stock = engine.stock_features("jm_kumo")
    prompt = EnvelopeConverter(SR, None, 7600.0, warp=1.18)(engine.synthesize(CLONE_TEXT, stock))
    features = engine.extract_features(prompt, SR, CLONE_TEXT)
    envelope = features.meta.get("envelope")
    assert envelope is not None, features.meta
    assert envelope["warp"] >= 1.1 and envelope["sim"] >= envelope["sim_without"] + 0.01, envelope
    assert features.meta["sim"] == envelope["sim"]  # what the clone reached, shown by GET /voices/<id>
    frames = features.arrays["envelope_frames"]
    assert frames.dtype == np.float32 and frames.shape[1] == ENVELOPE_BANDS
    engine.check_features(Features.from_bytes(features.to_bytes()))

    held_out = "我们明天早上九点在学校门口见面。"
    without = Features(meta={k: v for k, v in features.meta.items() if k != "envelope"},
                       arrays={k: v for k, v in features.arrays.items() if k != "envelope_frames"})
    target = engine._encoder.embed(prompt, SR)
    sim = {name: cosine_similarity(target, engine._encoder.embed(engine.synthesize(held_out, f), SR))
           for name, f in (("converted", features), ("without", without))}
    assert sim["converted"] > sim["without"], sim


def test_clauses_in_another_language_than_the_prompts_are_matched_more_gently(engine: KokoroEngine) -> None:
    stock = engine.stock_features("jf_alpha")
    speech = engine.synthesize("The old lighthouse stood on the cliff for a century.", stock)
    envelope_frames, _ = prompt_envelopes(speech, SR, SR)
    features = Features(meta={**stock.meta, "envelope": {**GOOD_ENVELOPE, "strength": 2.0, "language": "en"}},
                        arrays={**stock.arrays, "envelope_frames": envelope_frames})
    convert = engine.envelope_converter(features)
    assert convert is not None and convert.language == "en"
    assert convert.same_language.strength == 2.0
    assert convert.other_language.strength == pytest.approx(2.0 * CROSS_LANGUAGE_STRENGTH)
    audio = engine.synthesize("他昨天去图书馆借了书。", stock)
    assert np.array_equal(convert(audio, "他昨天去图书馆借了书。"), convert.other_language(audio))
    assert np.array_equal(convert(audio, "He went to the library."), convert.same_language(audio))
    assert np.array_equal(convert(audio, "，。"), convert.same_language(audio))  # no language: as the prompt's
    assert not np.array_equal(convert.same_language(audio), convert.other_language(audio))
    # refinement may have chosen the other language's strength by listening: that one is used
    features.meta["envelope"]["other_strength"] = 0.25
    assert engine.envelope_converter(features).other_language.strength == 0.25


def test_the_rate_matched_in_one_language_moves_the_other_languages_clauses_half_as_far(engine: KokoroEngine) -> None:
    stock = engine.stock_features("zf_xiaoxiao")
    zh, en = "他昨天去图书馆借了书，然后回家做饭。", "He went to the library and then cooked dinner at home."

    def seconds_at(language: str | None, text: str) -> float:
        features = Features(meta={**stock.meta, "speed": 0.8, "transcript_language": language}, arrays=stock.arrays)
        return seconds(engine.synthesize(text, features))

    # spoken in the transcript's language (or with none known): at the matched speed, 0.8
    assert seconds_at("zh", zh) == pytest.approx(seconds_at(None, zh), rel=0.01)
    # in the other language: at 0.8 ** CROSS_LANGUAGE_RATE, faster
    ratio = seconds_at("zh", zh) / seconds_at("en", zh)
    assert ratio == pytest.approx(0.8 ** (CROSS_LANGUAGE_RATE - 1), rel=0.05), ratio
    assert seconds_at("en", en) / seconds_at("zh", en) == pytest.approx(ratio, rel=0.05)


def test_a_clone_records_the_language_its_rate_was_matched_in(engine: KokoroEngine) -> None:
    prompt = engine.synthesize(CLONE_TEXT, engine.stock_features("zm_yunxi"))
    assert engine.extract_features(prompt, SR, CLONE_TEXT).meta["transcript_language"] == "zh"
    assert engine.extract_features(prompt, SR, "").meta["transcript_language"] is None


def test_a_voice_heard_poorly_is_never_cloned_from(engine: KokoroEngine) -> None:
    assert NOT_CLONED == {"zf_xiaoni"}
    prompt = engine.synthesize(CLONE_TEXT, engine.stock_features("zf_xiaoni"))
    features = engine.extract_features(prompt, SR, CLONE_TEXT)
    assert "zf_xiaoni" not in features.meta["voice_weights"], features.meta["voice_weights"]
    assert features.meta["similarity"] < 1.0
    assert engine.stock_features("zf_xiaoni").meta["voice_weights"] == {"zf_xiaoni": 1.0}  # still a stock voice


# --- TTS_ENGINE_DEVICE -------------------------------------------------------------------

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(("device", "available", "expected"), [
    ("auto", CPU_ONLY, CPU_ONLY),
    ("auto", WITH_CUDA, WITH_CUDA),
    ("cpu", WITH_CUDA, CPU_ONLY),
    ("cuda", WITH_CUDA, WITH_CUDA),
])
def test_the_device_picks_the_providers(device: str, available: list[str], expected: list[str]) -> None:
    assert execution_providers(device, available) == expected


def test_cuda_without_a_cuda_build_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        execution_providers("cuda", CPU_ONLY)


def test_this_machine_runs_the_model_on_the_cpu(engine: KokoroEngine) -> None:
    """Every test here runs on CPU; auto (the default) finds no CUDA in the CPU wheel."""
    assert engine.providers == CPU_ONLY
    with pytest.raises(ValueError, match="device"):
        KokoroEngine(engine.data_dir, device="gpu")
