"""The events a synthesis job sends to the channel of whoever waits for its audio (the /tts
consumer, an admin preview), and the one check of their order.

Each event is a channel-layer message ``{"type": ..., "job": <job id>, ...}``; Channels
calls the consumer's method named after the type (``tts.chunk`` -> ``tts_chunk``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from workers.errors import SynthesisFailed

#: the job has begun (its consumer's liveness clock starts)
STARTED = "tts.started"
#: a heartbeat from a distributed worker for a job that is quiet for a while
ALIVE = "tts.alive"
#: one audio chunk: ``index`` (0, 1, ...), ``data`` (base64), ``seconds`` of audio so far
CHUNK = "tts.chunk"
#: the job ended after ``count`` chunks
END = "tts.end"
#: the job failed: ``message`` says why, for the client
ERROR = "tts.error"


@dataclass(frozen=True)
class JobEvent:
    """One event of job ``job``; :meth:`as_message` is what goes over the channel layer."""

    type: ClassVar[str]
    job: str

    def as_message(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True)
class Started(JobEvent):
    type: ClassVar[str] = STARTED


@dataclass(frozen=True)
class Alive(JobEvent):
    type: ClassVar[str] = ALIVE


@dataclass(frozen=True)
class Chunk(JobEvent):
    type: ClassVar[str] = CHUNK
    index: int
    data: str  # base64 of the encoded audio
    seconds: float  # audio spoken so far in this job (for metering)


@dataclass(frozen=True)
class End(JobEvent):
    type: ClassVar[str] = END
    count: int


@dataclass(frozen=True)
class Error(JobEvent):
    type: ClassVar[str] = ERROR
    message: str  # why, for the client


class ChunkSequence:
    """The order a job's chunks must arrive in: 0, 1, 2, ... and an end that counts them.

    A chunk delivered twice (a redelivery after a reconnect) is dropped; a gap, or an end
    whose count disagrees with the chunks seen, is the job's failure: the client must never
    get audio with a hole in it."""

    def __init__(self) -> None:
        self.expected = 0

    def accept(self, index: object) -> bool:
        """True for the next chunk (pass it on), False for one already passed on; a gap raises."""
        if not isinstance(index, int) or isinstance(index, bool) or index > self.expected:
            raise SynthesisFailed(f"audio chunk {self.expected} was lost (got {index})")
        if index < self.expected:
            return False
        self.expected += 1
        return True

    def check_end(self, count: object) -> None:
        """An end must count exactly the chunks passed on."""
        if count != self.expected:
            raise SynthesisFailed("the audio stream ended with chunks missing")
