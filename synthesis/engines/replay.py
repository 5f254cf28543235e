"""ReplayEngine ("replay"): a stand-in engine FOR BENCHMARKS AND TESTS ONLY. It speaks no words.

Select it with ``TTS_ENGINE=replay``. It implements the whole engine contract
(``synthesis/engines/base.py``) at zero compute cost, so that a benchmark can tell the
platform's own cost (WebSocket, Daphne, job, channel layer, encoding) apart from a
model's:

- ``load()`` prepares a bank of pre-made audio once: a speech-like test signal (a
  gliding harmonic tone with a syllable-rate envelope and a little noise), or the file
  named by ``TTS_REPLAY_AUDIO`` (any format PyAV decodes), resampled to 24 kHz mono;
- ``stream()`` yields, per clause, the next slice of that bank, as long as the clause
  would take to say (``TTS_REPLAY_SECONDS_PER_UNIT`` seconds per segmenter unit, about
  a syllable: 0.2 s by default; at least 0.2 s per clause);
- pacing, off by default: ``TTS_REPLAY_DELAY_MS`` sleeps that long before each clause,
  and ``TTS_REPLAY_RTF`` sleeps that many seconds per second of audio (1.0 = real time,
  0.2 = an engine five times faster than real time). Sleeping uses no CPU: it stands for
  an engine on another device, so a benchmark can check that N streams are served
  without underruns while the platform alone uses this machine's CPU;
- ``extract_features()`` returns small but real features of the prompt (duration,
  level, a coarse 16-band spectrum), so cloning, storage, tone caches and feature
  checks all run as they do with a real engine.

Never deploy it: every voice sounds like the same test signal.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from synthesis.engines.base import EngineCapabilities, Features, StopSignal, StreamStopped, check_feature_owner

SAMPLE_RATE = 24000
#: seconds of pre-made audio held in memory; clauses take consecutive slices, wrapping around
BANK_SECONDS = 30.0
#: one segmenter unit is about one syllable (see synthesis/text/segmenter.py)
SECONDS_PER_UNIT = 0.2
MIN_CLAUSE_SECONDS = 0.2
SPECTRUM_BANDS = 16
_FADE = int(0.005 * SAMPLE_RATE)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {raw!r}")
    return value


class ReplayEngine:
    """Benchmark/test engine: replays pre-made audio, one slice per clause, at no compute cost."""

    name = "replay"
    feature_version = "replay-1"
    sample_rate = SAMPLE_RATE
    capabilities = EngineCapabilities(
        languages=("zh", "en"),
        instruct=(),
        cloning=("Benchmark/test engine: does not speak or clone; every voice replays the same "
                 "pre-made test audio, as long as the text would take to say."),
    )

    def __init__(self, data_dir: Path | None = None, threads: int = 1, concurrency: int = 1, device: str = "cpu", *,
                 audio_path: str | None = None, delay_ms: float | None = None, rtf: float | None = None,
                 seconds_per_unit: float | None = None) -> None:
        # data_dir, threads, concurrency and device are what the registry passes every engine; unused here.
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.audio_path = audio_path if audio_path is not None else (os.environ.get("TTS_REPLAY_AUDIO") or None)
        self.delay_s = (delay_ms if delay_ms is not None else _env_float("TTS_REPLAY_DELAY_MS", 0.0)) / 1000.0
        self.rtf = rtf if rtf is not None else _env_float("TTS_REPLAY_RTF", 0.0)
        self.seconds_per_unit = (seconds_per_unit if seconds_per_unit is not None
                                 else _env_float("TTS_REPLAY_SECONDS_PER_UNIT", SECONDS_PER_UNIT))
        if min(self.delay_s, self.rtf, self.seconds_per_unit) < 0:
            raise ValueError("replay pacing and length settings must be >= 0")
        self.loaded = False
        self.warm = False
        #: what a clause costs (seconds, seconds per unit): the pacing above, exactly
        self.clause_cost = (self.delay_s, self.rtf * self.seconds_per_unit)
        self._lock = threading.Lock()
        self._bank = np.zeros(0, np.float32)

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        if self.warm:
            return
        with self._lock:
            if self.warm:
                return
            bank = _load_audio(Path(self.audio_path)) if self.audio_path else _test_signal(BANK_SECONDS)
            if len(bank) < SAMPLE_RATE:
                raise ValueError(f"replay audio must be at least 1 s long, got {len(bank) / SAMPLE_RATE:.2f} s")
            self._bank = bank
            self.loaded = True
            self.warm = True

    # ------------------------------------------------------------------ cloning

    def stock_features(self, name: str = "test-signal") -> Features:
        """Features without a prompt (for in-process benchmarks)."""
        return Features(meta=self._meta(prompt_seconds=0.0, rms_dbfs=None, text_chars=0, stock=name),
                        arrays={"spectrum": np.zeros(SPECTRUM_BANDS, np.float32)})

    def extract_features(self, audio: np.ndarray, sample_rate: int, text: str) -> Features:
        self.load()
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not len(samples) or not np.all(np.isfinite(samples)):
            raise ValueError("prompt audio is empty or not finite")
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
        return Features(
            meta=self._meta(prompt_seconds=round(len(samples) / sample_rate, 3),
                            rms_dbfs=round(float(20 * np.log10(max(rms, 1e-9))), 2), text_chars=len(text or "")),
            arrays={"spectrum": _band_spectrum(samples)},
        )

    def check_features(self, features: Features) -> None:
        check_feature_owner(features, self.name, self.feature_version)
        spectrum = features.arrays.get("spectrum")
        if not isinstance(spectrum, np.ndarray) or spectrum.shape != (SPECTRUM_BANDS,):
            raise ValueError(f"features 'spectrum' must be ({SPECTRUM_BANDS},)")

    def _meta(self, **values: Any) -> dict[str, Any]:
        return {"engine": self.name, "feature_version": self.feature_version, **values}

    # ------------------------------------------------------------------ synthesis

    def clause_seconds(self, clause: str) -> float:
        from synthesis.text.segmenter import units

        return max(MIN_CLAUSE_SECONDS, units(clause) * self.seconds_per_unit)

    def stream(self, clauses: Iterable[str], features: Features, instruct: str | None,
               stop: StopSignal | None = None) -> Iterator[np.ndarray]:
        self.load()
        self.check_features(features)
        return self._stream(clauses, stop)

    def _stream(self, clauses: Iterable[str], stop: StopSignal | None) -> Iterator[np.ndarray]:
        bank = self._bank
        offset = 0
        for clause in clauses:
            n = int(round(self.clause_seconds(clause) * SAMPLE_RATE))
            pause = self.delay_s + self.rtf * n / SAMPLE_RATE
            if pause > 0:
                if stop is None:
                    time.sleep(pause)
                elif stop.wait(pause):  # "computing" stops as soon as nobody wants the audio
                    raise StreamStopped()
            idx = (offset + np.arange(n)) % len(bank) if offset + n > len(bank) else slice(offset, offset + n)
            audio = bank[idx].copy()
            offset = (offset + n) % len(bank)
            fade = min(_FADE, n // 2)
            if fade:
                ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
                audio[:fade] *= ramp
                audio[-fade:] *= ramp[::-1]
            yield audio

    def synthesize(self, text: str, features: Features, instruct: str | None = None) -> np.ndarray:
        from synthesis.text.segmenter import ClauseSegmenter

        segmenter = ClauseSegmenter()
        parts = list(self.stream(segmenter.feed(text) + segmenter.flush(), features, instruct))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _test_signal(seconds: float) -> np.ndarray:
    """Speech-like, deterministic: harmonics of a gliding ~150-230 Hz pitch, 4 Hz syllables, some noise."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 190 + 40 * np.sin(2 * np.pi * 0.3 * t) + 8 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 9))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4.0 * t)) ** 1.5
    noise = np.random.default_rng(7).standard_normal(n) * 0.02
    signal = voice * envelope + noise
    return (0.3 * signal / np.max(np.abs(signal))).astype(np.float32)


def _load_audio(path: Path) -> np.ndarray:
    import av

    from synthesis.resample import resample

    parts = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.codec_context.sample_rate)
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    return resample(np.clip(audio, -1, 1), rate, SAMPLE_RATE)


def _band_spectrum(samples: np.ndarray) -> np.ndarray:
    """Mean log power in SPECTRUM_BANDS equal bands over 1024-sample frames (at most 200 frames)."""
    frame = 1024
    if len(samples) < frame:
        samples = np.pad(samples, (0, frame - len(samples)))
    count = min(200, len(samples) // frame)
    frames = samples[: count * frame].reshape(count, frame) * np.hanning(frame).astype(np.float32)
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)[1:]
    bands = np.array_split(power, SPECTRUM_BANDS)
    return np.log10(np.array([b.mean() for b in bands]) + 1e-10).astype(np.float32)
