"""One synthesis job, independent of transport: text pieces in, numbered encoded chunks out.

The same function runs in a thread of the embedded server and (later) in a Celery
worker; only the text source and the chunk sink differ.
"""
from __future__ import annotations

import base64
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from synthesis.encoding import make_encoder
from synthesis.engines.base import Engine, Features, StopSignal, StreamStopped
from synthesis.request import TtsRequest
from synthesis.resample import resample
from synthesis.text.segmenter import ClauseSegmenter

log = logging.getLogger(__name__)


class ChunkSink(Protocol):
    def chunk(self, index: int, data_b64: str, seconds: float) -> None: ...
    def end(self, count: int) -> None: ...
    def error(self, message: str) -> None: ...


class JobCancelled(StreamStopped):
    """The client left or the job was abandoned; raised by the inbox or the job loop."""


class TextInbox:
    """Bounded hand-over of text pieces from the connection to the job thread."""

    _DONE = object()

    def __init__(self, capacity: int) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        #: set on cancel; the engine aborts a model run in flight on it
        self.cancelled = StopSignal()
        self._complete = threading.Event()

    def put(self, text: str, done: bool) -> None:
        """Non-blocking; raises queue.Full when the job is far behind the client."""
        if text:
            self._queue.put_nowait(text)
        if done:
            self._queue.put_nowait(self._DONE)
            self._complete.set()

    @property
    def complete(self) -> bool:
        """The client said done: all its text is queued, so reading it never waits on the client."""
        return self._complete.is_set()

    def cancel(self) -> None:
        self.cancelled.set()

    def pieces(self) -> Iterator[str]:
        while True:
            if self.cancelled.is_set():
                raise JobCancelled()
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is self._DONE:
                return
            assert isinstance(item, str)
            yield item


@dataclass
class JobStats:
    chunks: int = 0
    audio_seconds: float = 0.0
    first_chunk_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)


def clauses_from(inbox: TextInbox, segmenter: ClauseSegmenter) -> Iterator[str]:
    for piece in inbox.pieces():
        yield from segmenter.feed(piece)
    yield from segmenter.flush()


def run_synthesis(
    engine: Engine, features: Features, request: TtsRequest, inbox: TextInbox, sink: ChunkSink
) -> JobStats:
    """Speak every clause as soon as it is complete; send each encoded chunk with its index.

    The newest piece of audio is held until the engine asks for the next clause (at once,
    for an engine that yields one piece per clause). If the client has said done and no
    clause is left, that piece is the last: it goes out with the encoder's tail in one chunk
    (``encoder.finish(last)``), so every format sends the same number of chunks. Otherwise
    it goes out before the next clause is spoken or waited for: no chunk waits on synthesis
    or on the client. (A done that comes only after the last piece went out leaves the
    tail, if the format has one, as a short chunk of its own.)
    """
    stats = JobStats()
    encoder = make_encoder(request.audio_format, request.sample_rate, request.chunk_mode)
    held: list[tuple[np.ndarray, float]] = []  # at most one piece: (audio, its seconds)

    def emit(data: bytes) -> None:
        if not data:
            return
        if stats.first_chunk_at is None:
            stats.first_chunk_at = time.monotonic()
        sink.chunk(stats.chunks, base64.b64encode(data).decode("ascii"), stats.audio_seconds)
        stats.chunks += 1

    def take_held() -> np.ndarray | None:
        if not held:
            return None
        audio, seconds = held.pop()
        stats.audio_seconds += seconds
        return audio

    def release() -> None:
        """More audio follows the held piece, or the end is not known yet: send it now."""
        audio = take_held()
        if audio is not None:
            emit(encoder.write(audio))

    def feed() -> Iterator[str]:
        source = clauses_from(inbox, ClauseSegmenter())
        while True:
            if not inbox.complete:
                release()  # the next clause may wait on the client: no audio waits with it
            clause = next(source, None)  # once complete, this never waits
            if clause is None:
                return
            release()
            yield clause

    try:
        for audio in engine.stream(feed(), features, request.instruct_text, stop=inbox.cancelled):
            if inbox.cancelled.is_set():
                raise JobCancelled()
            seconds = len(audio) / engine.sample_rate
            # Clauses start and end in a faded pause, so resampling each one on its own
            # leaves no seam, and no resampler tail is held back from the client.
            out = resample(np.asarray(audio, dtype=np.float32), engine.sample_rate, request.sample_rate)
            if not len(out):
                stats.audio_seconds += seconds
                continue
            release()  # a clause in several pieces: this one follows the held one
            held.append((out, seconds))
        emit(encoder.finish(take_held()))
    except StreamStopped:
        log.info("job cancelled after %d chunks", stats.chunks)
        return stats
    sink.end(stats.chunks)
    return stats
