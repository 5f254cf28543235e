from __future__ import annotations

import numpy as np
import pytest

from synthesis.resample import StreamResampler, resample


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(audio: np.ndarray, rate: int) -> float:
    window = np.hanning(len(audio))
    spectrum = np.abs(np.fft.rfft(audio * window))
    return float(np.argmax(spectrum) * rate / len(audio))


def stream_in_chunks(resampler: StreamResampler, audio: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts, pos = [], 0
    while pos < len(audio):
        size = int(rng.integers(1, 3000))
        parts.append(resampler.process(audio[pos:pos + size]))
        pos += size
    parts.append(resampler.process(np.zeros(0, dtype=np.float32), last=True))
    return np.concatenate(parts)


@pytest.mark.parametrize(
    ("in_rate", "out_rate"),
    [(24000, 8000), (24000, 16000), (24000, 22050), (24000, 44100), (24000, 48000), (22050, 24000)],
)
def test_length_follows_rate_ratio(in_rate: int, out_rate: int) -> None:
    audio = tone(300, in_rate, 1.5)
    out = resample(audio, in_rate, out_rate)
    assert out.dtype == np.float32
    assert abs(len(out) - len(audio) * out_rate / in_rate) <= 1


@pytest.mark.parametrize("out_rate", [8000, 44100, 48000])
def test_tone_keeps_its_frequency(out_rate: int) -> None:
    out = resample(tone(1000, 24000, 1.0), 24000, out_rate)
    resolution = out_rate / len(out)
    assert abs(peak_frequency(out, out_rate) - 1000) <= resolution
    # amplitude survives (well inside the passband)
    assert np.sqrt(np.mean(out[100:-100] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_downsampling_removes_content_above_new_nyquist() -> None:
    out = resample(tone(6000, 24000, 1.0), 24000, 8000)  # 6 kHz cannot exist at 8 kHz
    assert np.sqrt(np.mean(out[200:-200] ** 2)) < 0.01


@pytest.mark.parametrize(("in_rate", "out_rate"), [(24000, 8000), (24000, 44100), (24000, 48000), (24000, 22050)])
def test_streamed_matches_one_shot(in_rate: int, out_rate: int) -> None:
    rng = np.random.default_rng(1)
    audio = (tone(440, in_rate, 2.0) + 0.05 * rng.standard_normal(2 * in_rate)).astype(np.float32)
    streamed = stream_in_chunks(StreamResampler(in_rate, out_rate), audio)
    one_shot = resample(audio, in_rate, out_rate)
    assert abs(len(streamed) - len(one_shot)) <= 1
    n = min(len(streamed), len(one_shot))
    np.testing.assert_allclose(streamed[:n], one_shot[:n], atol=1e-4)


def test_equal_rates_pass_through() -> None:
    audio = tone(440, 24000, 0.1)
    resampler = StreamResampler(24000, 24000)
    assert resampler.passthrough
    out = resampler.process(audio)
    np.testing.assert_array_equal(out, audio)
    assert out is not audio
    assert len(resampler.process(np.zeros(0, dtype=np.float32), last=True)) == 0
    np.testing.assert_array_equal(resample(audio, 24000, 24000), audio)


def test_accepts_column_vectors_and_float64() -> None:
    audio = tone(440, 24000, 0.2).astype(np.float64)[:, np.newaxis]
    out = resample(audio, 24000, 16000)
    assert out.ndim == 1 and out.dtype == np.float32


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        StreamResampler(0, 24000)
    with pytest.raises(ValueError):
        StreamResampler(24000, 16000, quality="best")
    with pytest.raises(ValueError):
        resample(np.zeros((2, 100), dtype=np.float32), 24000, 16000)
    with pytest.raises(ValueError):
        resample(np.zeros(10, dtype=np.float32), 24000, -1)


def test_no_input_after_last_chunk() -> None:
    resampler = StreamResampler(24000, 16000)
    resampler.process(tone(440, 24000, 0.1), last=True)
    with pytest.raises(RuntimeError):
        resampler.process(tone(440, 24000, 0.1))
