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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from synthesis.encoding import make_encoder
from synthesis.engines.base import Engine, Features, StopSignal, StreamStopped, clause_cost
from synthesis.pacing import ClausePacer
from synthesis.request import TtsRequest
from synthesis.resample import resample
from synthesis.text.segmenter import ClauseSegmenter, units

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
        yield from segmenter.clauses_in(piece)
    yield from segmenter.flush()


class _FirstAudioHold:
    """The timer that sends a job's first audio after a short hold (synthesis/pacing.py)."""

    def __init__(self) -> None:
        self.started = False
        self._timer: threading.Timer | None = None
        self._until = 0.0
        self._failure: BaseException | None = None

    def start(self, seconds: float, send: Callable[[], None]) -> None:
        self.started = True
        if seconds <= 0:
            return

        def run() -> None:
            try:
                send()
            except BaseException as exc:  # noqa: BLE001 - handed to the job thread
                self._failure = exc

        self._until = time.monotonic() + seconds
        self._timer = threading.Timer(seconds, run)
        self._timer.daemon = True
        self._timer.start()

    def waiting(self) -> bool:
        return self._timer is not None and time.monotonic() < self._until

    def left(self) -> float:
        return max(0.0, self._until - time.monotonic()) if self._timer is not None else 0.0

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure


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
    pacer = ClausePacer(clause_cost(engine))
    # The first audio may wait for a timer (pacing.first_hold) while the engine speaks the
    # next clause: emit, take_held and release run under this lock, from either thread.
    lock = threading.RLock()
    first = _FirstAudioHold()

    def emit(data: bytes) -> None:
        first.raise_failure()
        if not data:
            return
        if stats.first_chunk_at is None:
            stats.first_chunk_at = time.monotonic()
        sink.chunk(stats.chunks, base64.b64encode(data).decode("ascii"), stats.audio_seconds)
        stats.chunks += 1

    def take_held() -> np.ndarray | None:
        first.cancel()
        if not held:
            return None
        audio, seconds = held.pop()
        stats.audio_seconds += seconds
        return audio

    def release(force: bool = False) -> None:
        """More audio follows the held piece, or the end is not known yet: send it now
        (unless it is the first and held back: its timer sends it, or ``force``)."""
        with lock:
            if first.waiting() and not force:
                return
            audio = take_held()
            if audio is not None:
                emit(encoder.write(audio))

    def release_first() -> None:  # the hold timer's thread
        if not inbox.cancelled.is_set():
            release(force=True)

    def queued_ahead() -> float | None:
        """Seconds of audio the listener has yet to hear (None before any audio)."""
        with lock:
            held_s = sum(seconds for _, seconds in held)
            if stats.first_chunk_at is None:  # playback starts when the held piece goes out
                return (held_s + first.left()) or None
            return stats.first_chunk_at + stats.audio_seconds + held_s - time.monotonic()

    asked = [time.monotonic()]  # when the engine asked for the clause it is speaking

    def feed() -> Iterator[str]:
        segmenter = ClauseSegmenter()
        source = clauses_from(inbox, segmenter)
        while True:
            if not inbox.complete:
                release()  # the next clause may wait on the client: no audio waits with it
            segmenter.budget = pacer.budget(queued_ahead())
            clause = next(source, None)  # once complete, this never waits
            if clause is None:
                return
            release()
            asked[0] = time.monotonic()
            yield clause  # the engine speaks it, then asks for the next one
            pacer.observe(units(clause), time.monotonic() - asked[0])

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
            release(force=True)  # a clause in several pieces: this one follows the held one
            with lock:
                held.append((out, seconds))
                if stats.chunks == 0 and not first.started:
                    first.start(pacer.first_hold(seconds, time.monotonic() - asked[0]), release_first)
        with lock:
            emit(encoder.finish(take_held()))
    except StreamStopped:
        log.info("job cancelled after %d chunks", stats.chunks)
        return stats
    finally:
        first.cancel()
    sink.end(stats.chunks)
    return stats
