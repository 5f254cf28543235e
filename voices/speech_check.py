"""Is a clone prompt speech at all? A cheap, deterministic voiced-frames check.

The engine fits a voice to whatever audio it gets, so white noise, hum, a test tone,
clicks or random bytes read as raw PCM would become a nonsense "voice". Such prompts are
refused up front with a message that says what was found.

Speech is recognised by what every language's speech has and those sounds lack:

* **voiced frames in runs**: vowels and nasals repeat their waveform at a pitch between
  ``F0_MIN`` and ``F0_MAX``. Each 40 ms frame (at 8 kHz) gets the normalised
  cross-correlation of its two ends at every candidate period; it is voiced when the
  best peak reaches ``VOICING``, and it counts only inside a run of ``MIN_RUN`` voiced
  frames whose pitch moves by less than ``MAX_STEP`` from frame to frame (a syllable).
  White noise and random PCM never get near ``VOICING``; brown and pink noise and random
  clicks sometimes do, but only in isolated frames at unrelated periods.
* **a moving pitch**: a hum, a tone or a click train is perfectly periodic, but at one
  pitch. Intonation moves speech by several semitones in any sentence, so voiced frames
  whose pitch spans less than ``MIN_PITCH_SPREAD`` semitones (10th to 90th percentile)
  are a tone, not a voice.

A prompt needs ``min_voiced_seconds`` of such voiced speech and ``MIN_VOICED_SHARE`` of
its non-silent frames voiced (so a little speech lost in noise is refused too). Tuned on
the repository's prompts (Kokoro, espeak-ng and piper voices, Chinese and English, also
with white or brown noise at 10-20 dB SNR: 35 % or more voiced) against white, pink and
brown noise, random PCM and clicks (1 % or less). A 30 s prompt costs a few tens of ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from core.errors import ApiError

ANALYSIS_RATE = 8000
FRAME_S = 0.040
HOP_S = 0.020
F0_MIN, F0_MAX = 50.0, 500.0
#: Smallest normalised correlation peak of a voiced frame (speech 0.6-1.0; white noise < 0.4).
VOICING = 0.5
#: A later (longer-period) peak is taken as the pitch only if the first is below this share of it.
PEAK_SHARE = 0.9
MIN_RUN = 3  # frames, i.e. 80 ms
MAX_STEP = 0.12  # largest pitch change between neighbouring frames of one run (12 %)
#: Frames this far below the prompt's loud frames (dB) are pauses, as are frames below SILENCE_DBFS.
ACTIVE_RANGE_DB = 35.0
SILENCE_DBFS = -70.0
MIN_VOICED_SECONDS = 0.5
MIN_VOICED_SHARE = 0.2
MIN_PITCH_SPREAD = 1.0  # semitones


@dataclass(frozen=True)
class SpeechStats:
    """What the check measured (also for logs and tuning)."""

    active_seconds: float  # non-silent frames
    voiced_seconds: float  # voiced frames in runs
    pitch_spread: float  # semitones, 10th-90th percentile over voiced frames (0 if none)
    median_f0: float  # Hz over voiced frames (0 if none)

    @property
    def voiced_share(self) -> float:
        return self.voiced_seconds / self.active_seconds if self.active_seconds else 0.0


def require_speech(
    samples: np.ndarray, sample_rate: int, *, min_voiced_seconds: float = MIN_VOICED_SECONDS
) -> SpeechStats:
    """Raise a 400 :class:`ApiError` unless ``samples`` sound like someone speaking."""
    stats = measure_speech(samples, sample_rate)
    if stats.voiced_seconds < min_voiced_seconds or stats.voiced_share < MIN_VOICED_SHARE:
        raise ApiError(
            f"prompt audio does not sound like speech: only {stats.voiced_seconds:.2f} s of voiced speech "
            f"({stats.voiced_share:.0%} of the non-silent audio) where at least {min_voiced_seconds:g} s and "
            f"{MIN_VOICED_SHARE:.0%} are needed; noise, clicks or bytes that are not audio cannot be cloned"
        )
    if stats.pitch_spread < MIN_PITCH_SPREAD:
        raise ApiError(
            f"prompt audio does not sound like speech: its pitch stays at {stats.median_f0:.0f} Hz "
            "throughout, as in a steady tone or hum, not a voice"
        )
    return stats


def measure_speech(samples: np.ndarray, sample_rate: int) -> SpeechStats:
    """Non-silent and voiced time and pitch spread of ``samples`` (mono float)."""
    x = np.asarray(samples, dtype=np.float32)
    if sample_rate != ANALYSIS_RATE:
        x = soxr.resample(x, sample_rate, ANALYSIS_RATE, quality="LQ")
    n, hop = int(FRAME_S * ANALYSIS_RATE), int(HOP_S * ANALYSIS_RATE)
    hop_s = hop / ANALYSIS_RATE
    if x.size < n:
        return SpeechStats(0.0, 0.0, 0.0, 0.0)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    level = 10.0 * np.log10(np.maximum(frames.var(axis=1, dtype=np.float64), 1e-20))
    active = (level > SILENCE_DBFS) & (level > np.percentile(level, 95) - ACTIVE_RANGE_DB)
    active_s = float(active.sum() * hop_s)
    if not active.any():
        return SpeechStats(0.0, 0.0, 0.0, 0.0)

    chosen = frames[active].astype(np.float64)
    chosen -= chosen.mean(axis=1, keepdims=True)
    nccf = _nccf(chosen, int(np.ceil(ANALYSIS_RATE / F0_MIN)) + 1)
    height, period = _pitch_peaks(nccf, int(ANALYSIS_RATE / F0_MAX))
    lag = np.ones(len(frames))
    lag[active] = period
    voiced = np.zeros(len(frames), bool)
    voiced[active] = height >= VOICING
    voiced = _in_runs(voiced, lag)
    if not voiced.any():
        return SpeechStats(active_s, 0.0, 0.0, 0.0)
    semitones = 12.0 * np.log2(ANALYSIS_RATE / lag[voiced])
    spread = float(np.percentile(semitones, 90) - np.percentile(semitones, 10))
    return SpeechStats(active_s, float(voiced.sum() * hop_s), spread, float(ANALYSIS_RATE / np.median(lag[voiced])))


def _nccf(frames: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised cross-correlation of ``x[0:n-k]`` with ``x[k:n]``, k = 0..max_lag, per frame."""
    rows, n = frames.shape
    size = 1 << int(np.ceil(np.log2(n + max_lag + 1)))  # no circular wrap-around
    spec = np.fft.rfft(frames, size, axis=1)
    corr = np.fft.irfft(spec.real**2 + spec.imag**2, size, axis=1)[:, : max_lag + 1]
    cum = np.cumsum(np.square(frames), axis=1)
    head = cum[:, n - 1 - np.arange(max_lag + 1)]  # energy of x[0:n-k]
    tail = cum[:, -1:] - np.concatenate((np.zeros((rows, 1)), cum[:, :max_lag]), axis=1)  # of x[k:n]
    return corr / np.sqrt(np.maximum(head * tail, 1e-30))


def _pitch_peaks(nccf: np.ndarray, min_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the height and (fractional) lag of the pitch peak; height -1 if none.

    Peaks are refined with a parabola through their three points, so a period that falls
    between two samples is not scored below its multiples; the pitch is the first peak
    nearly as high as the highest, so a tone's multiples are not taken for it.
    """
    mid = nccf[:, min_lag:-1]
    left, right = nccf[:, min_lag - 1 : -2], nccf[:, min_lag + 1 :]
    curve = left - 2.0 * mid + right
    is_peak = (mid >= left) & (mid > right) & (curve < 0)
    shift = np.clip(0.5 * (left - right) / np.where(is_peak, curve, -1.0), -0.5, 0.5)
    heights = np.where(is_peak, mid - 0.25 * (left - right) * shift, -1.0)
    best = heights.max(axis=1)
    pick = np.argmax(heights >= PEAK_SHARE * best[:, None], axis=1)
    rows = np.arange(len(nccf))
    return np.where(best > -1.0, heights[rows, pick], -1.0), pick + min_lag + shift[rows, pick]


def _in_runs(voiced: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """Voiced frames that belong to a run of ``MIN_RUN`` neighbours with a smoothly moving pitch."""
    linked = voiced[:-1] & voiced[1:] & (np.abs(np.log(lag[1:] / lag[:-1])) < np.log1p(MAX_STEP))
    # Runs of links: a run of m links joins m + 1 frames.
    edges = np.diff(np.concatenate(([0], linked.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = np.zeros(voiced.size + 1, np.int32)
    long_enough = ends - starts + 1 >= MIN_RUN
    np.add.at(keep, starts[long_enough], 1)
    np.add.at(keep, ends[long_enough] + 1, -1)
    return np.cumsum(keep)[:-1] > 0
