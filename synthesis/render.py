"""A whole text to one complete audio file: what a batch item produces.

Unlike a live stream (synthesis/job.py) nothing waits on a listener, so the text is cut
at its natural clauses (no pacing) and encoded once at the end: the file is one
independently decodable file of the format (a wav with its real sizes, an mp3 with one
encoder run), as a ``/tts`` chunk in file mode is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthesis.encoding import make_encoder
from synthesis.engines.base import Engine, Features, StopSignal, background_work
from synthesis.resample import resample
from synthesis.text.segmenter import ClauseSegmenter


@dataclass(frozen=True)
class RenderedAudio:
    data: bytes
    #: seconds of audio in the file
    seconds: float


def render_file(engine: Engine, features: Features, text: str, audio_format: str, sample_rate: int,
                instruct: str | None = None, stop: StopSignal | None = None) -> RenderedAudio:
    """Speak ``text`` into one file. ``stop`` aborts between (and, for engines that look
    at it, inside) model runs with ``StreamStopped``. The engine runs at background
    priority where it has one (``background_work``): live streams go first."""
    segmenter = ClauseSegmenter()
    clauses = [*segmenter.clauses_in(text), *segmenter.flush()]
    pieces: list[np.ndarray] = []
    with background_work(engine):
        for audio in engine.stream(clauses, features, instruct, stop=stop):
            pieces.append(np.asarray(audio, dtype=np.float32))
    whole = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    seconds = len(whole) / engine.sample_rate
    encoder = make_encoder(audio_format, sample_rate, "file")
    out = resample(whole, engine.sample_rate, sample_rate)
    return RenderedAudio(encoder.finish(out), round(seconds, 3))
