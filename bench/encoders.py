"""Encoder cost per format, in-process: ms of CPU-bound wall time per second of audio.

A fixed speech-like signal (the replay engine's test signal, ``seconds`` long, 24 kHz
mono) goes through ``synthesis.encoding.make_encoder(fmt, rate, mode)`` in clause-sized
blocks (``block_s``), as a job feeds it, then ``finish()``. Median of ``repeats`` runs.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

from synthesis.encoding import FORMATS, MODES, make_encoder
from synthesis.engines.replay import _test_signal


def encoder_costs(seconds: float = 10.0, rate: int = 24000, formats: tuple[str, ...] | None = None,
                  modes: tuple[str, ...] = MODES, block_s: float = 1.0, repeats: int = 3) -> dict[str, Any]:
    signal = _test_signal(seconds)
    if rate != 24000:
        from synthesis.resample import resample

        signal = resample(signal, 24000, rate)
    block = max(1, int(block_s * rate))
    blocks = [signal[i:i + block] for i in range(0, len(signal), block)]
    results: dict[str, Any] = {}
    for fmt in formats or tuple(FORMATS):
        results[fmt] = {}
        for mode in modes:
            times, size = [], 0
            for _ in range(repeats):
                start = time.perf_counter()
                encoder = make_encoder(fmt, rate, mode)
                size = sum(len(encoder.write(b)) for b in blocks) + len(encoder.finish())
                times.append(time.perf_counter() - start)
            elapsed = statistics.median(times)
            results[fmt][mode] = {
                "ms_per_audio_s": round(1000 * elapsed / seconds, 3),
                "kbit_per_s": round(8 * size / seconds / 1000, 1),
            }
    return {"seconds": seconds, "sample_rate": rate, "block_s": block_s, "repeats": repeats, "formats": results}


def _main() -> None:  # pragma: no cover - manual use
    import json

    print(json.dumps(encoder_costs(), indent=1))


if __name__ == "__main__":  # pragma: no cover
    _main()


__all__ = ["encoder_costs"]
