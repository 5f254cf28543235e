"""Envelope conversion (synthesis/engines/kokoro/envelope.py) on synthetic vowels whose formants are known."""
from __future__ import annotations

import numpy as np
import pytest

from synthesis.engines.kokoro.envelope import (
    BANDS,
    MAX_FRAMES,
    Confidence,
    EnvelopeConverter,
    frame_length,
    prompt_envelopes,
    top_hz,
)
from synthesis.engines.kokoro.pitch import median_f0

SR = 24000


def resonate(x: np.ndarray, formant_hz: float, bandwidth_hz: float) -> np.ndarray:
    """Two-pole resonator (one formant)."""
    r = np.exp(-np.pi * bandwidth_hz / SR)
    a1, a2 = 2 * r * np.cos(2 * np.pi * formant_hz / SR), -r * r
    y = np.zeros(len(x))
    y1 = y2 = 0.0
    for i, v in enumerate(x):
        y0 = v + a1 * y1 + a2 * y2
        y[i], y2, y1 = y0, y1, y0
    return y


def vowel(formants: tuple[float, ...], f0: float = 140.0, seconds: float = 1.0, jitter: float = 0.0) -> np.ndarray:
    """A pulse train at ``f0`` through one resonator per formant, peak 0.5."""
    n = int(seconds * SR)
    pulses = np.zeros(n)
    rng = np.random.default_rng(0)
    t = 0.0
    while t < n:
        pulses[int(t)] = 1.0
        t += SR / f0 * (1 + jitter * rng.standard_normal())
    y = pulses
    for f in formants:
        y = resonate(y, f, 90.0)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def smooth_log_spectrum(audio: np.ndarray) -> np.ndarray:
    """Long-term log power spectrum, cepstrally smoothed: the average envelope, harmonics gone."""
    n = frame_length(SR)
    frames = np.lib.stride_tricks.sliding_window_view(audio, n)[:: n // 4] * np.hanning(n)
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    cepstrum = np.fft.irfft(np.log(power + 1e-12))
    cepstrum[25:-24] = 0
    return np.fft.rfft(cepstrum).real


def best_warp(before: np.ndarray, after: np.ndarray) -> float:
    """The ratio r for which after's envelope best equals before's read at f / r (230 Hz-4.2 kHz)."""
    a, b = smooth_log_spectrum(before), smooth_log_spectrum(after)
    bins = np.arange(len(a))
    band = (bins > 10) & (bins < 180)
    errors = {}
    for r in np.arange(0.75, 1.3, 0.01):
        diff = (b - np.interp(bins / r, bins, a))[band]
        errors[round(float(r), 2)] = float(np.mean((diff - diff.mean()) ** 2))
    return min(errors, key=errors.get)


@pytest.fixture(scope="module")
def ah() -> np.ndarray:
    return vowel((700.0, 1200.0, 2600.0))


def test_identity_returns_the_input_untouched(ah: np.ndarray) -> None:
    convert = EnvelopeConverter(SR, None, 7600.0)
    assert convert.is_identity
    assert np.array_equal(convert(ah), ah)


@pytest.mark.parametrize("warp", [0.88, 1.15])
def test_the_warp_moves_the_formants_and_keeps_the_pitch(ah: np.ndarray, warp: float) -> None:
    warped = EnvelopeConverter(SR, None, 7600.0, warp=warp)(ah)
    assert len(warped) == len(ah) and warped.dtype == np.float32
    assert best_warp(ah, warped) == pytest.approx(warp, abs=0.03)
    assert median_f0(warped, SR) == pytest.approx(median_f0(ah, SR), rel=0.02)


def band_distance(a: np.ndarray, b: np.ndarray) -> float:
    x, y = smooth_log_spectrum(a), smooth_log_spectrum(b)
    band = slice(10, 300)  # ~230 Hz - 7 kHz
    d = (x - y)[band]
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def test_matching_moves_each_frame_towards_the_prompts_envelope() -> None:
    # Two "speakers" saying the same two vowels: their frames are matched by vowel, and the
    # voice ends up with the prompt speaker's formants for each, its own pitch kept.
    prompt = np.concatenate([vowel((750.0, 1150.0, 2500.0), f0=210.0), vowel((330.0, 2300.0, 3000.0), f0=210.0)])
    voice = np.concatenate([vowel((650.0, 1000.0, 2300.0)), vowel((290.0, 2000.0, 2700.0))])
    frames, top = prompt_envelopes(prompt, SR, SR)
    converted = EnvelopeConverter(SR, frames, top, strength=1.0)(voice)
    assert len(converted) == len(voice)
    half = len(voice) // 2
    for part in (slice(0, half), slice(half, None)):
        before = band_distance(voice[part], prompt[part])
        after = band_distance(converted[part], prompt[part])
        assert after < 0.6 * before, (part, before, after)
    assert median_f0(converted[:half], SR) == pytest.approx(median_f0(voice[:half], SR), rel=0.02)
    # each frame keeps its energy
    gain_db = 10 * np.log10(np.mean(converted**2) / np.mean(voice**2))
    assert abs(gain_db) < 0.5, gain_db


def test_frames_without_a_near_prompt_frame_are_left_alone(ah: np.ndarray) -> None:
    prompt = vowel((330.0, 2300.0, 3000.0), f0=210.0)
    frames, top = prompt_envelopes(prompt, SR, SR)
    changed = EnvelopeConverter(SR, frames, top, strength=1.0, confidence=Confidence(near=100.0, far=100.0))(ah)
    kept = EnvelopeConverter(SR, frames, top, strength=1.0, confidence=Confidence(near=0.0, far=0.01))(ah)
    assert band_distance(changed, ah) > 1.0
    assert band_distance(kept, ah) < 0.1
    assert np.sqrt(np.mean((kept - ah) ** 2)) < 0.01 * np.sqrt(np.mean(ah**2)) + 1e-4


def test_distances_are_small_for_the_prompt_itself(ah: np.ndarray) -> None:
    frames, top = prompt_envelopes(ah, SR, SR)
    convert = EnvelopeConverter(SR, frames, top, strength=1.0)
    own = convert.distances(ah)
    other = convert.distances(vowel((330.0, 2300.0, 3000.0)))
    assert len(own) > 0 and np.median(own) < 0.5 * np.median(other), (np.median(own), np.median(other))


def test_silence_and_empty_input() -> None:
    frames, top = prompt_envelopes(vowel((700.0, 1200.0, 2600.0)), SR, SR)
    convert = EnvelopeConverter(SR, frames, top, strength=1.5, warp=1.1)
    assert len(convert(np.zeros(0, np.float32))) == 0
    silence = np.zeros(SR // 2, np.float32)
    assert np.abs(convert(silence)).max() < 1e-6
    short = convert(np.full(10, 0.1, np.float32))
    assert short.shape == (10,) and np.all(np.isfinite(short))


def test_prompt_envelopes_cover_what_the_prompt_carries() -> None:
    speech = vowel((700.0, 1200.0, 2600.0), seconds=1.0)
    at_16k = speech[::3][: 16000]  # crude, but a 16 kHz signal: nothing above 8 kHz
    frames, top = prompt_envelopes(at_16k, 16000, SR)
    assert frames.shape[1] == BANDS and frames.dtype == np.float32
    assert top == top_hz(16000) == pytest.approx(7200.0)
    long_prompt = np.tile(speech, 20)
    frames, _ = prompt_envelopes(long_prompt, SR, SR)
    assert len(frames) == MAX_FRAMES
    for bad in (np.zeros(SR, np.float32), np.full(100, 0.1, np.float32)):
        with pytest.raises(ValueError):
            prompt_envelopes(bad, SR, SR)


@pytest.mark.parametrize("kwargs", [
    {"warp": 1.5}, {"warp": 0.5}, {"strength": 3.0}, {"strength": -1.0},
    {"strength": 1.0, "frames": np.zeros((10, BANDS - 1), np.float32)},
    {"strength": 1.0, "frames": np.zeros((2, BANDS), np.float32)},
    {"strength": 1.0, "frames": None},
])
def test_bad_parameters_are_refused(kwargs: dict) -> None:
    frames = kwargs.pop("frames", np.zeros((10, BANDS), np.float32))
    with pytest.raises(ValueError):
        EnvelopeConverter(SR, frames, 7600.0, **kwargs)
