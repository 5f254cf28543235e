from __future__ import annotations

import numpy as np
import pytest

from synthesis.engines.kokoro.pitch import estimate_f0, median_f0, play_faster


def harmonic(f0: float, seconds: float = 1.0, sr: int = 24000, weak_fundamental: bool = False) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    amps = [0.2 if weak_fundamental else 1.0] + [1.0 / k for k in range(2, 8)]
    x = sum(a * np.sin(2 * np.pi * f0 * k * t) for k, a in enumerate(amps, start=1))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("f0", [70.0, 110.0, 180.0, 260.0, 420.0])
@pytest.mark.parametrize("sr", [16000, 24000, 44100])
def test_median_f0_of_harmonic_tones(f0: float, sr: int) -> None:
    assert median_f0(harmonic(f0, sr=sr), sr) == pytest.approx(f0, rel=0.02)


def test_weak_fundamental_is_not_an_octave_off() -> None:
    assert median_f0(harmonic(150.0, weak_fundamental=True), 24000) == pytest.approx(150.0, rel=0.02)


def test_silence_noise_and_short_audio_have_no_pitch() -> None:
    rng = np.random.default_rng(0)
    assert median_f0(np.zeros(24000, np.float32), 24000) is None
    assert median_f0((0.1 * rng.standard_normal(24000)).astype(np.float32), 24000) is None
    assert median_f0(harmonic(200.0, seconds=0.02), 24000) is None
    assert len(estimate_f0(np.zeros(10, np.float32), 24000)) == 0


def test_silent_half_is_unvoiced() -> None:
    sr = 16000
    x = np.concatenate([harmonic(200.0, seconds=0.5, sr=sr), np.zeros(sr // 2, np.float32)])
    f0 = estimate_f0(x, sr)
    half = len(f0) // 2
    assert np.median(f0[: half - 5]) == pytest.approx(200.0, rel=0.02)
    assert np.all(f0[half + 5 :] == 0)


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_play_faster_scales_pitch_and_duration(factor: float) -> None:
    x = harmonic(200.0)
    y = play_faster(x, 24000, factor)
    assert y.dtype == np.float32
    assert len(y) == pytest.approx(len(x) / factor, rel=0.01)
    assert median_f0(y, 24000) == pytest.approx(200.0 * factor, rel=0.02)


def test_play_faster_identity_and_bad_factor() -> None:
    x = harmonic(200.0, seconds=0.1)
    assert np.array_equal(play_faster(x, 24000, 1.0), x)
    with pytest.raises(ValueError):
        play_faster(x, 24000, 0.0)
