"""Spectral-envelope conversion: move a voice's formants and frame-by-frame envelopes
towards a prompt speaker's, pitch and timing kept.

Kokoro cannot be taught a new speaker, but what a listener (and a speaker encoder) hears
of a speaker's timbre lives largely in the spectral envelope of each frame: where the
formants sit (the vocal-tract length), their bandwidths, the source's tilt. Two steps,
in one STFT pass per clause:

- **Formant warp.** The envelope moves along the frequency axis by a ratio (> 1: up, a
  shorter tract). It also undoes what the resampling pitch shift (synthesis/engines/kokoro/pitch.py) did
  to the formants.
- **Nearest-frame matching** (the idea of kNN voice conversion, on envelopes instead of
  learned features). The prompt's speaking frames are kept as band envelopes. Each frame
  of the voice takes the mean envelope of its K nearest prompt frames, compared by shape
  (each envelope's long-term mean and level removed, so frames are matched by what is said,
  not by who says it). The frame is then scaled by ``strength`` times the difference.
  A frame whose nearest prompt frames are far (a sound the short prompt never made) is
  changed less, down to not at all: a confidence ramp between two distances measured at
  clone time on the voice speaking the prompt's own transcript.

Envelopes come from cepstral smoothing of the log-magnitude spectrum (harmonics, the pitch,
are smoothed away; the gain applied is smooth, so the harmonics and phase stay). Each clause
is converted on its own (clauses are synthesised whole and begin and end in silence), at
about 10-15 ms of CPU per second of audio on the 2-core machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from synthesis.engines.kokoro.timbre import hz_to_mel, mel_to_hz

#: warp ratios accepted (beyond these, speech turns into a caricature)
WARP_RANGE = (0.8, 1.25)
#: matching strengths accepted (1: the neighbours' envelope; more: beyond it)
STRENGTH_RANGE = (0.0, 2.0)
BANDS = 32
_LOW_HZ = 100.0
_HIGH_HZ = 7600.0
#: bands above this fraction of the prompt's sample rate carry nothing of the prompt
_PROMPT_BAND_LIMIT = 0.45
_FRAME_S = 0.04
_HOP_FRACTION = 4
#: cepstral coefficients kept (quefrencies below ~1.2 ms): smooth enough to step over the
#: harmonics of voices up to ~400 Hz, fine enough to keep the first formants apart
_LIFTER_S = 0.0012
#: frames quieter than this below the loudest one are pauses: never matched, never changed
_ACTIVE_DB = -35.0
#: mean bin power (dB) under which a frame is silence whatever the loudest is (~1e-5 full scale)
_SILENCE_DB = -80.0
NEIGHBOURS = 4
#: at most this many prompt frames are kept (about 13 s at 24 kHz); longer prompts are thinned
MAX_FRAMES = 1200
#: per-band change limit of the matching (18 dB cost intelligibility for little similarity),
#: and per-bin limit of the whole gain
_MAX_MATCH_DB = 10.0
_MAX_GAIN_DB = 24.0


def frame_length(sample_rate: int) -> int:
    return 1 << int(np.ceil(np.log2(_FRAME_S * sample_rate)))


def top_hz(prompt_rate: int) -> float:
    """Highest band centre the prompt can speak for."""
    return float(min(_HIGH_HZ, _PROMPT_BAND_LIMIT * prompt_rate))


class _Stft:
    """Hann-windowed STFT at 75 % overlap and its overlap-add inverse, for one signal."""

    def __init__(self, audio: np.ndarray, sample_rate: int) -> None:
        self.n_fft = frame_length(sample_rate)
        self.hop = self.n_fft // _HOP_FRACTION
        self.length = len(audio)
        count = int(np.ceil((len(audio) + self.n_fft) / self.hop))
        padded = np.zeros((count - 1) * self.hop + self.n_fft, np.float64)
        padded[self.n_fft // 2 : self.n_fft // 2 + len(audio)] = audio
        self.padded_length = len(padded)
        self.window = np.hanning(self.n_fft + 1)[:-1]  # periodic: w^2 overlap-adds to a constant
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft)[:: self.hop][:count]
        self.spectrum = np.fft.rfft(frames * self.window, axis=1)

    def inverse(self, spectrum: np.ndarray) -> np.ndarray:
        frames = np.fft.irfft(spectrum, n=self.n_fft, axis=1) * self.window
        out = np.zeros(self.padded_length)
        for j in range(_HOP_FRACTION):  # overlap-add a quarter of every frame at a time
            part = frames[:, j * self.hop : (j + 1) * self.hop].reshape(-1)
            out[j * self.hop : j * self.hop + len(part)] += part
        out /= float(np.sum(self.window**2) / self.hop)
        return out[self.n_fft // 2 : self.n_fft // 2 + self.length].astype(np.float32)

    def log_envelope(self, sample_rate: int) -> np.ndarray:
        """Cepstrally smoothed log magnitude (natural log), frames x bins."""
        cepstrum = np.fft.irfft(np.log(np.abs(self.spectrum) + 1e-9), n=self.n_fft, axis=1)
        lifter = max(4, int(_LIFTER_S * sample_rate))
        cepstrum[:, lifter + 1 : self.n_fft - lifter] = 0.0
        return np.fft.rfft(cepstrum, axis=1).real

    def active(self) -> np.ndarray:
        level = 10 * np.log10(np.mean(np.abs(self.spectrum) ** 2, axis=1) + 1e-12)
        return (level > level.max() + _ACTIVE_DB) & (level > _SILENCE_DB)


def _band_bins(sample_rate: int, n_fft: int, top: float) -> np.ndarray:
    centres = mel_to_hz(np.linspace(hz_to_mel(_LOW_HZ), hz_to_mel(top), BANDS))
    return centres * n_fft / sample_rate


def _interpolate_bins(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``rows`` (frames x bins) read at fractional bin ``positions``, linearly."""
    low = np.minimum(positions.astype(np.int64), rows.shape[1] - 2)
    frac = positions - low
    return rows[:, low] * (1 - frac) + rows[:, low + 1] * frac


def _to_db(log_magnitude: np.ndarray) -> np.ndarray:
    return log_magnitude * (20.0 / np.log(10.0))


def prompt_envelopes(audio: np.ndarray, sample_rate: int, engine_rate: int) -> tuple[np.ndarray, float]:
    """The prompt's speaking frames as band envelopes (dB, frames x BANDS, float32) on the
    engine's STFT grid, and the top band centre they cover; ValueError when it has none."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != engine_rate:
        x = soxr.resample(x, sample_rate, engine_rate).astype(np.float32)
    if len(x) < frame_length(engine_rate):
        raise ValueError("prompt too short for envelope analysis")
    stft = _Stft(x, engine_rate)
    top = top_hz(sample_rate)
    bands = _to_db(_interpolate_bins(stft.log_envelope(engine_rate), _band_bins(engine_rate, stft.n_fft, top)))
    frames = bands[stft.active()]
    if len(frames) < 2 * NEIGHBOURS:
        raise ValueError("prompt has too little speech for envelope analysis")
    if len(frames) > MAX_FRAMES:
        frames = frames[np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(np.int64)]
    return frames.astype(np.float32), top


def _shapes(bands: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Envelopes with the speaker's long-term mean and each frame's level removed."""
    centred = bands - mean
    return centred - centred.mean(axis=1, keepdims=True)


@dataclass(frozen=True)
class Confidence:
    """Neighbour distances (dB, RMS per band) at which matching is full (near) and off (far)."""

    near: float
    far: float

    def weight(self, distance: np.ndarray) -> np.ndarray:
        span = max(self.far - self.near, 1e-3)
        return np.clip((self.far - distance) / span, 0.0, 1.0)


class EnvelopeConverter:
    """Formant warp and nearest-frame envelope matching, one clause at a time (see the module)."""

    def __init__(self, sample_rate: int, prompt_frames: np.ndarray | None, top: float, strength: float = 0.0,
                 warp: float = 1.0, confidence: Confidence | None = None) -> None:
        if not WARP_RANGE[0] - 1e-6 <= warp <= WARP_RANGE[1] + 1e-6:
            raise ValueError(f"formant warp must be in {WARP_RANGE}, got {warp}")
        if not STRENGTH_RANGE[0] <= strength <= STRENGTH_RANGE[1]:
            raise ValueError(f"envelope strength must be in {STRENGTH_RANGE}, got {strength}")
        if strength > 0 and (prompt_frames is None or prompt_frames.ndim != 2 or prompt_frames.shape[1] != BANDS
                             or len(prompt_frames) < NEIGHBOURS):
            raise ValueError(f"envelope matching needs at least {NEIGHBOURS} prompt frames of {BANDS} bands")
        self.sample_rate = sample_rate
        self.warp = float(warp)
        self.strength = float(strength)
        self.confidence = confidence
        self.top = float(top)
        self._n_fft = frame_length(sample_rate)
        self._bins = _band_bins(sample_rate, self._n_fft, self.top)
        if strength > 0 and prompt_frames is not None:
            frames = np.asarray(prompt_frames, dtype=np.float64)
            self._prompt_mean = frames.mean(axis=0)
            self._prompt_centred = frames - self._prompt_mean
            self._prompt_shapes = _shapes(frames, self._prompt_mean)
            self._prompt_norms = np.sum(self._prompt_shapes**2, axis=1)

    @property
    def is_identity(self) -> bool:
        return self.strength == 0 and abs(self.warp - 1.0) < 1e-3

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return self._convert(audio)[0]

    def distances(self, audio: np.ndarray) -> np.ndarray:
        """Neighbour distance of each speaking frame of ``audio`` (for :class:`Confidence`)."""
        return self._convert(audio, distances_only=True)[1]

    def _convert(self, audio: np.ndarray, distances_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        empty = np.zeros(0)
        if len(x) == 0 or (self.is_identity and not distances_only):
            return x, empty
        stft = _Stft(x, self.sample_rate)
        envelope = stft.log_envelope(self.sample_rate)
        bins = envelope.shape[1]
        gain = np.zeros_like(envelope)
        if abs(self.warp - 1.0) >= 1e-3:
            warped = _interpolate_bins(envelope, np.clip(np.arange(bins) / self.warp, 0, bins - 1))
            gain += warped - envelope
            envelope = warped
        distance = empty
        if self.strength > 0:
            match, distance = self._match(_to_db(_interpolate_bins(envelope, self._bins)), stft.active())
            if distances_only:
                return x, distance
            gain += np.stack([np.interp(np.arange(bins), self._bins, row) for row in match]) * (np.log(10.0) / 20)
        limit = _MAX_GAIN_DB * np.log(10.0) / 20
        gain = np.exp(np.clip(gain, -limit, limit))
        # every frame keeps its energy: loudness is matched elsewhere, once, for the whole voice
        power = np.abs(stft.spectrum) ** 2
        before = power.sum(axis=1)
        after = (power * gain**2).sum(axis=1)
        gain *= np.sqrt(np.where(after > 0, before / np.maximum(after, 1e-30), 1.0))[:, None]
        return stft.inverse(stft.spectrum * gain), distance

    def _match(self, bands: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame band gains (dB) towards the nearest prompt frames, and the speaking frames' distances."""
        change = np.zeros_like(bands)
        if not active.any():
            return change, np.zeros(0)
        shapes = _shapes(bands, bands[active].mean(axis=0))
        mine = shapes[active]
        # einsum, not matmul: a BLAS call here would wake OpenBLAS's thread pool, whose
        # spinning threads compete with the model's (the speaker encoder pins BLAS to one
        # thread for the same reason); the product is small, ~3 ms per second of audio
        squared = (np.sum(mine**2, axis=1)[:, None] - 2.0 * np.einsum("ib,jb->ij", mine, self._prompt_shapes)
                   + self._prompt_norms[None, :])
        nearest = np.argpartition(squared, NEIGHBOURS - 1, axis=1)[:, :NEIGHBOURS]
        distance = np.sqrt(np.maximum(np.take_along_axis(squared, nearest, axis=1).mean(axis=1), 0.0) / BANDS)
        target = self._prompt_centred[nearest].mean(axis=1) + self._prompt_mean
        weight = np.full(len(mine), self.strength)
        if self.confidence is not None:
            weight = weight * self.confidence.weight(distance)
        step = weight[:, None] * (target - bands[active])
        step -= step.mean(axis=1, keepdims=True)
        change[active] = np.clip(step, -_MAX_MATCH_DB, _MAX_MATCH_DB)
        # light smoothing over time: neighbouring frames may pick different neighbours
        padded = np.pad(change, ((1, 1), (0, 0)), mode="edge")
        change = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
        change[~active] = 0.0
        return change, distance
