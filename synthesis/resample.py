"""Sample-rate conversion for mono float32 audio, one-shot or chunk by chunk (soxr)."""
from __future__ import annotations

import numpy as np
import soxr

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def _mono_float32(audio: np.ndarray) -> np.ndarray:
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _check_rate(rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {rate!r}")
    return int(rate)


class StreamResampler:
    """Resamples a stream fed in arbitrary chunks; the output joins seamlessly.

    soxr keeps filter state between chunks, so output lags input by the filter
    delay; pass ``last=True`` on the final chunk (it may be empty) to flush it.
    Not thread-safe: give each stream its own instance.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate = _check_rate(in_rate)
        self.out_rate = _check_rate(out_rate)
        if quality not in QUALITIES:
            raise ValueError(f"unknown soxr quality {quality!r}; expected one of {QUALITIES}")
        self.quality = quality
        self._stream: soxr.ResampleStream | None = None
        if self.in_rate != self.out_rate:
            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype="float32", quality=quality
            )
        self._done = False

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def process(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        if self._done:
            raise RuntimeError("StreamResampler already received last=True")
        arr = _mono_float32(audio)
        self._done = last
        if self._stream is None:
            return arr.copy()
        return self._stream.resample_chunk(arr, last=last)


def resample(audio: np.ndarray, in_rate: int, out_rate: int, quality: str = "HQ") -> np.ndarray:
    """Resample a whole signal at once."""
    in_rate, out_rate = _check_rate(in_rate), _check_rate(out_rate)
    if quality not in QUALITIES:
        raise ValueError(f"unknown soxr quality {quality!r}; expected one of {QUALITIES}")
    arr = _mono_float32(audio)
    if in_rate == out_rate:
        return arr.copy()
    return soxr.resample(arr, in_rate, out_rate, quality=quality).astype(np.float32, copy=False)
