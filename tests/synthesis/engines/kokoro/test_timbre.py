"""Timbre equalisation (synthesis/engines/kokoro/timbre.py): long-term spectra, the correction curve, the filter."""
from __future__ import annotations

import numpy as np
import pytest

from synthesis.engines.kokoro import timbre

SR = 24000


def noise(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def tone(hz: float, seconds: float = 0.5) -> np.ndarray:
    return (0.1 * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2)))


def tilt(db_per_band: float) -> np.ndarray:
    gains = db_per_band * (np.arange(timbre.BANDS) - (timbre.BANDS - 1) / 2)
    return gains - gains.mean()


def test_long_term_spectrum_is_relative_and_sees_colour() -> None:
    white = timbre.long_term_spectrum(noise(), SR)
    assert white.shape == (timbre.BANDS,) and abs(white.mean()) < 1e-6
    bright = timbre.long_term_spectrum(timbre.Equaliser(tilt(0.5), SR)(noise()), SR)
    rise = bright - white
    assert np.corrcoef(rise, tilt(0.5))[0, 1] > 0.95
    assert rise[-4:].mean() - rise[:4].mean() > 8


def test_long_term_spectrum_ignores_pauses() -> None:
    speech = noise(1.0)
    with_pauses = np.concatenate([speech[:12000], np.zeros(SR, np.float32), speech[12000:], np.zeros(SR, np.float32)])
    assert np.abs(timbre.long_term_spectrum(with_pauses, SR) - timbre.long_term_spectrum(speech, SR)).max() < 1.0


def test_long_term_spectrum_of_too_short_audio_raises() -> None:
    with pytest.raises(ValueError):
        timbre.long_term_spectrum(np.zeros(100, np.float32), SR)


def test_the_correction_undoes_a_colouring() -> None:
    voice = noise(seed=1)
    prompt = timbre.Equaliser(tilt(0.4), SR)(noise(seed=2))
    gains = timbre.correction(timbre.long_term_spectrum(prompt, SR), timbre.long_term_spectrum(voice, SR), SR)
    assert abs(gains.mean()) < 1e-4
    assert np.corrcoef(gains, tilt(0.4))[0, 1] > 0.95
    corrected = timbre.Equaliser(gains, SR)(voice)
    before = np.abs(timbre.long_term_spectrum(voice, SR) - timbre.long_term_spectrum(prompt, SR)).mean()
    after = np.abs(timbre.long_term_spectrum(corrected, SR) - timbre.long_term_spectrum(prompt, SR)).mean()
    assert after < 0.3 * before


def test_the_correction_is_bounded_and_scaled_by_strength() -> None:
    flat = np.zeros(timbre.BANDS)
    steep = tilt(5.0)  # far beyond the limit at both ends
    gains = timbre.correction(steep, flat, SR)
    assert np.abs(gains).max() == pytest.approx(timbre.MAX_CORRECTION_DB)
    half = timbre.correction(tilt(0.2), flat, SR, strength=0.5)
    assert np.allclose(half, timbre.correction(tilt(0.2), flat, SR) * 0.5, atol=1e-4)


def test_bands_above_what_the_prompt_carries_keep_the_last_carried_gain() -> None:
    gains = timbre.correction(tilt(0.3), np.zeros(timbre.BANDS), 8000)  # a telephone prompt: up to 4 kHz
    above = timbre.band_centres() >= 0.45 * 8000
    assert above.any()
    assert np.allclose(gains[above], gains[~above][-1])


def test_the_equaliser_applies_its_gains_in_place_and_time() -> None:
    centres = timbre.band_centres()
    gains = np.zeros(timbre.BANDS)
    gains[20] = 9.0  # about 3 kHz, with its neighbours' share below
    eq = timbre.Equaliser(gains, SR)
    boosted, plain = tone(centres[20]), tone(centres[5])
    assert rms_db(eq(boosted)[2000:-2000]) - rms_db(boosted[2000:-2000]) == pytest.approx(9.0, abs=1.5)
    assert rms_db(eq(plain)[2000:-2000]) - rms_db(plain[2000:-2000]) == pytest.approx(0.0, abs=1.0)
    click = np.zeros(4000, np.float32)
    click[2000] = 1.0
    out = eq(click)
    assert len(out) == len(click) and int(np.argmax(np.abs(out))) == 2000  # no delay


def test_a_flat_equaliser_leaves_audio_alone() -> None:
    audio = noise()
    assert timbre.Equaliser(np.zeros(timbre.BANDS), SR)(audio) is audio


@pytest.mark.parametrize("gains", [np.zeros(5), np.full(timbre.BANDS, np.nan)])
def test_bad_gains_raise(gains: np.ndarray) -> None:
    with pytest.raises(ValueError):
        timbre.Equaliser(gains, SR)
