"""The same text gives the same number of chunks in every format (issue 17, item 16).

What an encoder still holds at the end (AAC's partial frame, the resampler's flush for
opus at 44.1 kHz, the codec's look-ahead, the closing Ogg page or fMP4 fragment) goes out
with the last real chunk, never as a near-silent chunk of its own, in both chunk modes.
"""
from __future__ import annotations

import pytest

from tests.e2e.support import decode_audio, stream_tts
from tests.server import RunningServer

FORMATS = ["opus", "pcm", "wav", "mp3", "flac", "aac", "m4a"]
#: every format at 44.1 kHz (opus had a tail there only), aac and m4a at 24 kHz too; the whole
#: format x rate x mode matrix runs at the encoder level in tests/synthesis/test_encoding.py
CASES = [(fmt, 44100) for fmt in FORMATS] + [(fmt, 24000) for fmt in ("pcm", "aac", "m4a")]
#: two clauses: the first chunk goes out before the last one, which carries the tail
TEXT = ["Hello there. ", "Welcome back."]


def _seconds(data: bytes, fmt: str, rate: int) -> float:
    samples, decoded_rate = decode_audio(data, fmt, rate)
    return len(samples) / decoded_rate


def _total_and_last(chunks: list[bytes], fmt: str, rate: int, mode: str) -> tuple[float, float]:
    """Seconds of the whole request and of its last chunk."""
    if mode == "file":  # every chunk is a whole file
        durations = [_seconds(chunk, fmt, rate) for chunk in chunks]
        return sum(durations), durations[-1]
    total = _seconds(b"".join(chunks), fmt, rate)
    before = _seconds(b"".join(chunks[:-1]), fmt, rate) if len(chunks) > 1 else 0.0
    return total, total - before


@pytest.mark.parametrize("mode", ["file", "stream"])
def test_every_format_and_rate_sends_the_same_number_of_chunks(server: RunningServer, voice: str, mode: str) -> None:
    counts: dict[tuple[str, int], int] = {}
    totals: dict[tuple[str, int], float] = {}
    for fmt, rate in CASES:
        params = {"prompt_id": voice, "audio_format": fmt, "sample_rate": rate, "chunk_mode": mode}
        result = stream_tts(server.ws, params, TEXT)
        assert not result.errors and result.end is not None, (fmt, rate, result.errors)
        assert result.end["index"] == len(result.audio)
        total, last = _total_and_last(result.chunks(), fmt, rate, mode)
        assert last >= 0.3, f"{fmt} at {rate} Hz: the last chunk holds only {last:.3f} s"
        counts[fmt, rate] = result.end["index"]
        totals[fmt, rate] = total
    assert len(set(counts.values())) == 1, counts
    assert min(counts.values()) >= 2, counts
    for (fmt, rate), total in totals.items():
        # no audio lost, no extra silence: only the codec's priming and last-frame padding
        # (AAC: 1024 samples per ADTS file in file mode) on top of the raw PCM
        extra = total - totals["pcm", rate]
        assert -0.005 <= extra <= 0.15, f"{fmt} at {rate} Hz: {extra:+.3f} s against pcm"
