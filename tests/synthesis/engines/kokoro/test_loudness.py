"""The BS.1770 / EBU R128 loudness meter against signals whose loudness is known."""
from __future__ import annotations

import numpy as np
import pytest

from synthesis.engines.kokoro.loudness import gain_to, integrated_loudness


def sine(freq: float, dbfs: float, seconds: float, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [48000, 44100, 24000, 16000])
def test_a_1khz_sine_at_minus_20_dbfs_reads_minus_23_lufs(rate: int) -> None:
    # -0.691 cancels K-weighting's +0.691 dB at 1 kHz: a sine's mean square is -3.01 dB below its peak.
    assert integrated_loudness(sine(1000, -20, 5, rate), rate) == pytest.approx(-23.0, abs=0.05)


def test_full_scale_sine_and_level_changes() -> None:
    assert integrated_loudness(sine(1000, 0, 5), 48000) == pytest.approx(-3.01, abs=0.05)
    quiet = integrated_loudness(sine(1000, -30, 5), 48000)
    assert quiet == pytest.approx(-33.0, abs=0.05)
    assert integrated_loudness(2 * sine(1000, -30, 5), 48000) - quiet == pytest.approx(6.02, abs=0.01)


def test_k_weighting_shape() -> None:
    """Low frequencies count less (RLB high-pass), high ones more (the +4 dB head shelf)."""
    at = {f: integrated_loudness(sine(f, -20, 3), 48000) for f in (30, 100, 1000, 5000)}
    assert at[30] < at[100] - 3
    assert 1.0 < at[1000] - at[100] < 2.5
    assert 3.0 < at[5000] - at[1000] < 4.5


def test_silence_is_gated_out() -> None:
    tone = sine(1000, -20, 10)
    padded = np.concatenate([np.zeros(48000 * 5, np.float32), tone, np.zeros(48000 * 10, np.float32)])
    assert integrated_loudness(padded, 48000) == pytest.approx(integrated_loudness(tone, 48000), abs=0.2)
    assert integrated_loudness(np.zeros(48000, np.float32), 48000) == float("-inf")
    assert integrated_loudness(np.zeros(0, np.float32), 48000) == float("-inf")


def test_the_relative_gate_ignores_quiet_passages() -> None:
    """EBU Tech 3341 style: 10 s at -36, 60 s at -23, 10 s at -36 (LUFS) reads -23 within 0.1."""
    signal = np.concatenate([sine(1000, -33, 10), sine(1000, -20, 60), sine(1000, -33, 10)])
    assert integrated_loudness(signal, 48000) == pytest.approx(-23.0, abs=0.1)
    # The same quiet passages 15 LU down but without the gate would pull it below -24.
    ungated = 10 * np.log10((60 * 10 ** (-2.3) + 20 * 10 ** (-3.6)) / 80)
    assert ungated < -23.8


def test_short_audio_is_one_block() -> None:
    assert integrated_loudness(sine(1000, -20, 0.2), 48000) == pytest.approx(-23.0, abs=0.3)


def test_gain_to_a_target_is_bounded() -> None:
    tone = sine(1000, -30, 3)
    assert gain_to(tone, 48000, -23.0) == pytest.approx(10 ** (10 / 20), rel=0.01)
    assert gain_to(tone, 48000, 0.0, max_db=12) == pytest.approx(10 ** (12 / 20))
    assert gain_to(np.zeros(4800, np.float32), 48000, -23.0) == 1.0
