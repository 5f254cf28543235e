"""Timbre equalisation: shape a voice's long-term spectrum towards a prompt speaker's.

Cloning with a fixed set of voices leaves the spectral colour of the voice (vocal tract,
microphone, channel) behind. Comparing the long-term average spectrum of the prompt with
that of the engine speaking the prompt's transcript gives a smooth correction curve, a
few dB per band; a linear-phase filter applies it to every clause. The curve is
relative (its mean is zero), so loudness matching stays a separate step, and it is
limited to the band the prompt actually carries.
"""
from __future__ import annotations

import numpy as np
import soxr

#: analysis rate: every prompt is compared on the same 0-8 kHz band
ANALYSIS_RATE = 16000
_FRAME = 512
_HOP = 160
#: frames quieter than this below the loudest one are pauses, not voice
_ACTIVE_DB = -35.0
#: correction bands: mel-spaced centres from 80 Hz to 7.6 kHz
BANDS = 28
_LOW_HZ = 80.0
_HIGH_HZ = 7600.0
#: the correction never exceeds this, either way (a prompt's oddities are not worth distortion)
MAX_CORRECTION_DB = 18.0
#: taps of the filter at the engine's rate (linear phase: half of it is the delay, taken back)
FILTER_TAPS = 511


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def band_centres() -> np.ndarray:
    return mel_to_hz(np.linspace(hz_to_mel(_LOW_HZ), hz_to_mel(_HIGH_HZ), BANDS))


def _band_matrix(n_bins: int) -> np.ndarray:
    """(BANDS, n_bins) triangular weights on the analysis FFT's bins."""
    freqs = np.linspace(0, ANALYSIS_RATE / 2, n_bins)
    edges = mel_to_hz(np.linspace(hz_to_mel(_LOW_HZ), hz_to_mel(_HIGH_HZ), BANDS + 2))
    weights = np.zeros((BANDS, n_bins))
    for b in range(BANDS):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        rising = (freqs - lo) / max(mid - lo, 1e-9)
        falling = (hi - freqs) / max(hi - mid, 1e-9)
        weights[b] = np.clip(np.minimum(rising, falling), 0.0, None)
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)


def long_term_spectrum(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean power (dB) per band over the frames that carry voice; relative, mean zero."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != ANALYSIS_RATE:
        x = soxr.resample(x, sample_rate, ANALYSIS_RATE)
    if len(x) < _FRAME:
        raise ValueError("audio is too short to measure its spectrum")
    frames = np.lib.stride_tricks.sliding_window_view(x, _FRAME)[::_HOP]
    power = np.abs(np.fft.rfft(frames * np.hanning(_FRAME).astype(np.float32), axis=1)) ** 2
    energy = power.sum(axis=1)
    active = energy > energy.max() * 10 ** (_ACTIVE_DB / 10)
    mean = power[active].mean(axis=0)
    bands = 10 * np.log10(_band_matrix(power.shape[1]) @ mean + 1e-12)
    return bands - bands.mean()


def correction(prompt: np.ndarray, voice: np.ndarray, prompt_rate: int, strength: float = 1.0) -> np.ndarray:
    """Per-band gains (dB, mean zero) that move ``voice``'s long-term spectrum towards
    ``prompt``'s; bands above what ``prompt_rate`` carries get the last carried band's gain."""
    gains = prompt - voice
    gains = np.convolve(np.pad(gains, 1, mode="edge"), np.ones(3) / 3, mode="valid")  # no single-band spikes
    carried = band_centres() < 0.45 * prompt_rate
    if carried.any() and not carried.all():
        gains[~carried] = gains[carried][-1]
    gains = np.clip(strength * (gains - gains.mean()), -MAX_CORRECTION_DB, MAX_CORRECTION_DB)
    return gains.astype(np.float32)


class Equaliser:
    """A fixed linear-phase filter for per-band ``gains_db`` at ``sample_rate``. Stateless per
    call: clauses start and end in faded silence, so each is filtered on its own."""

    def __init__(self, gains_db: np.ndarray, sample_rate: int) -> None:
        gains_db = np.asarray(gains_db, dtype=np.float64)
        if gains_db.shape != (BANDS,) or not np.all(np.isfinite(gains_db)):
            raise ValueError(f"equaliser gains must be {BANDS} finite values")
        n_fft = FILTER_TAPS + 1
        freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
        log_freqs = np.log(np.maximum(freqs, 1.0))
        curve = np.interp(log_freqs, np.log(band_centres()), gains_db)  # held flat beyond both ends
        impulse = np.fft.irfft(10.0 ** (curve / 20.0), n_fft)
        impulse = np.roll(impulse, FILTER_TAPS // 2)[:FILTER_TAPS] * np.hanning(FILTER_TAPS)
        self.taps = impulse.astype(np.float32)
        self.identity = bool(np.all(np.abs(gains_db) < 0.05))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        if self.identity or not len(audio):
            return audio
        n = len(audio) + FILTER_TAPS - 1
        size = 1 << (n - 1).bit_length()
        out = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(self.taps, size), size)
        delay = FILTER_TAPS // 2
        return out[delay:delay + len(audio)].astype(np.float32)
