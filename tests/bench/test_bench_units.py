"""The benchmark's own arithmetic and the replay engine, without servers (fast)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.client import StreamRecord, first_clause_piece, llm_pieces, playback
from bench.stats import summary
from synthesis.engines.base import Engine, Features
from synthesis.engines.registry import ENGINES, engine_class
from synthesis.engines.replay import SAMPLE_RATE, ReplayEngine


def test_pieces_join_back_and_find_the_first_clause() -> None:
    text = "Sure! Here is the plan. 好的！下面是明天的安排。"
    pieces = llm_pieces(text)
    assert "".join(pieces) == text
    assert pieces[:2] == ["Sure!", " Here"]
    # The segmenter decides "Sure!" once it sees what follows it: the second piece.
    assert first_clause_piece(pieces) == 1
    assert first_clause_piece(llm_pieces("no break at all")) == 4  # only at done


def test_playback_counts_underruns_and_resumes_after_a_stall() -> None:
    # 1 s chunks: the second arrives in time (0.5 s left), the third 0.5 s late, the fourth in time again.
    result = playback([0.0, 0.5, 2.5, 3.0], [1.0, 1.0, 1.0, 1.0])
    assert result["underruns"] == 1
    assert result["stall_s"] == pytest.approx(0.5)
    assert result["min_headroom_s"] == pytest.approx(-0.5)
    assert playback([0.0, 0.1, 0.2], [1.0, 1.0, 1.0])["underruns"] == 0


def test_stream_record_metrics() -> None:
    record = StreamRecord("stream", "en", 1, 0, first_clause_at=0.1, done_at=0.8, end_at=2.0,
                          arrivals=[0.4, 0.9, 1.9], seconds=[0.5, 1.0, 1.0])
    m = record.metrics()
    assert m["ttfa_clause_s"] == pytest.approx(0.3)
    assert m["ttfa_done_s"] is None  # audio came before done
    assert m["gaps_s"] == pytest.approx([0.5, 1.0])
    assert m["underruns"] == 0
    assert m["rtf"] == pytest.approx(2.0 / 2.5)
    assert not StreamRecord("burst", "en", 1, 0, error="boom").metrics()["ok"]


def test_summary_percentiles_in_ms() -> None:
    s = summary([0.1, 0.2, 0.3, 0.4])
    assert s["n"] == 4 and s["p50"] == 250.0 and s["max"] == 400.0
    assert summary([])["p50"] is None


def test_replay_engine_is_registered_and_follows_the_contract() -> None:
    assert ENGINES["replay"].endswith(":ReplayEngine")
    engine = engine_class("replay")(data_dir=None, threads=1, concurrency=1)
    assert isinstance(engine, Engine) and engine.name == "replay"
    engine.load()
    assert engine.loaded and engine.warm
    prompt = (0.1 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    features = Features.from_bytes(engine.extract_features(prompt, 16000, "hello there").to_bytes())
    assert features.meta["engine"] == "replay" and features.meta["prompt_seconds"] == pytest.approx(2.0)
    blocks = list(engine.stream(iter(["好的！", "下面是明天的安排。"]), features, None))
    assert [len(b) for b in blocks] == [int(0.4 * SAMPLE_RATE), int(1.6 * SAMPLE_RATE)]  # 0.2 s per syllable
    assert all(b.dtype == np.float32 and np.abs(b).max() <= 1 for b in blocks)
    with pytest.raises(ValueError, match="features are for"):
        engine.stream(iter(["hi"]), Features(meta={"engine": "kokoro", "feature_version": "kokoro-1"}), None)


def test_replay_engine_paces_and_reads_its_settings_from_the_environment(monkeypatch, tmp_path) -> None:
    import time
    import wave

    monkeypatch.setenv("TTS_REPLAY_DELAY_MS", "30")
    monkeypatch.setenv("TTS_REPLAY_RTF", "0.1")
    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(np.arange(32000) * 0.1) * 8000).astype("<i2").tobytes())
    monkeypatch.setenv("TTS_REPLAY_AUDIO", str(path))
    engine = ReplayEngine()
    engine.load()
    assert len(engine._bank) == 2 * SAMPLE_RATE  # resampled to 24 kHz
    start = time.perf_counter()
    audio = engine.synthesize("好的！好的！", engine.stock_features())  # two clauses of 0.4 s
    elapsed = time.perf_counter() - start
    assert len(audio) == int(0.8 * SAMPLE_RATE)
    assert elapsed >= 2 * 0.030 + 0.1 * 0.8 - 0.005
    monkeypatch.setenv("TTS_REPLAY_RTF", "-1")
    with pytest.raises(ValueError, match="TTS_REPLAY_RTF"):
        ReplayEngine()
