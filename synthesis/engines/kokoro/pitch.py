"""Fundamental-frequency estimation (YIN) and duration-preserving pitch shifting."""
from __future__ import annotations

import numpy as np
import soxr

ANALYSIS_RATE = 16000
F0_MIN = 60.0
F0_MAX = 500.0
_FRAME = 0.025  # integration window, seconds
_HOP = 0.010
_THRESHOLD = 0.15  # YIN absolute threshold on the cumulative-mean-normalised difference
_VOICED_MAX = 0.35  # frames whose best dip is above this are unvoiced
_SILENCE_DB = -40.0  # frames this far below the loudest one are silence


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    if len(x) < length:
        return np.zeros((0, length), dtype=x.dtype)
    n = 1 + (len(x) - length) // hop
    return np.lib.stride_tricks.sliding_window_view(x, length)[::hop][:n]


def estimate_f0(
    audio: np.ndarray, sample_rate: int, fmin: float = F0_MIN, fmax: float = F0_MAX
) -> np.ndarray:
    """Per-frame F0 in Hz (10 ms hop); 0 where the frame is unvoiced or silent."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if sample_rate != ANALYSIS_RATE:
        x = soxr.resample(x, sample_rate, ANALYSIS_RATE)
    sr = ANALYSIS_RATE
    w = int(_FRAME * sr)
    tau_min = max(2, int(sr / fmax))
    tau_max = int(np.ceil(sr / fmin))
    frames = _frames(x, w + tau_max + 1, int(_HOP * sr))
    if len(frames) == 0:
        return np.zeros(0)
    frames = frames - frames.mean(axis=1, keepdims=True)

    # Difference function d(tau) = sum_j (x_j - x_{j+tau})^2 over a window of w samples,
    # via r(tau) = sum_j x_j x_{j+tau} computed with one FFT per frame.
    n_fft = 1 << int(np.ceil(np.log2(2 * frames.shape[1])))
    spec_full = np.fft.rfft(frames, n_fft)
    spec_head = np.fft.rfft(frames[:, :w], n_fft)
    r = np.fft.irfft(np.conj(spec_head) * spec_full, n_fft)[:, : tau_max + 1]
    sq = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    energy_head = sq[:, w][:, None]
    energy_shift = sq[:, taus + w] - sq[:, taus]
    d = np.maximum(energy_head + energy_shift - 2.0 * r, 0.0)

    # Cumulative-mean-normalised difference.
    cmnd = np.ones_like(d)
    cums = np.cumsum(d[:, 1:], axis=1)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cums, 1e-12)

    search = cmnd[:, tau_min : tau_max + 1]
    below = search < _THRESHOLD
    # First dip under the threshold, then walk down to its local minimum.
    first = np.where(below.any(axis=1), below.argmax(axis=1), search.argmin(axis=1))
    rows = np.arange(len(search))
    idx = first.copy()
    for _ in range(search.shape[1]):
        nxt = np.minimum(idx + 1, search.shape[1] - 1)
        step = search[rows, nxt] < search[rows, idx]
        if not step.any():
            break
        idx = np.where(step, nxt, idx)
    best = search[rows, idx]
    tau = idx + tau_min

    # Parabolic interpolation around the dip.
    left = cmnd[rows, np.maximum(tau - 1, 0)]
    mid = cmnd[rows, tau]
    right = cmnd[rows, np.minimum(tau + 1, tau_max)]
    denom = left - 2 * mid + right
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    f0 = sr / (tau + np.clip(shift, -1, 1))

    level = 10 * np.log10(energy_head[:, 0] / w + 1e-12)
    loud = level > max(level.max() + _SILENCE_DB, -70.0)
    voiced = (best < _VOICED_MAX) & loud & (f0 >= fmin) & (f0 <= fmax)
    return np.where(voiced, f0, 0.0)


def median_f0(audio: np.ndarray, sample_rate: int) -> float | None:
    """Median F0 over voiced frames, or None when fewer than 5 frames are voiced."""
    f0 = estimate_f0(audio, sample_rate)
    voiced = f0[f0 > 0]
    if len(voiced) < 5:
        return None
    return float(np.median(voiced))


def play_faster(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Resample so the audio plays ``factor`` times faster: pitch x factor, duration / factor.

    Paired with synthesising at speed / factor this shifts pitch and keeps duration.
    """
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if abs(factor - 1.0) < 1e-4 or len(x) == 0:
        return x
    if factor <= 0:
        raise ValueError(f"factor must be positive, got {factor}")
    return soxr.resample(x, sample_rate * factor, sample_rate).astype(np.float32, copy=False)
