"""Start a synthesis job in the configured mode (workers/backend.py); consumers see one job interface."""
from __future__ import annotations

from typing import Protocol

from synthesis.request import TtsRequest
from workers.backend import current
from workers.runner import VoiceRef


class Job(Protocol):
    job_id: str
    remote: bool

    async def send_text(self, text: str, done: bool) -> None: ...
    def saw_event(self) -> None: ...
    def liveness_problem(self) -> str | None: ...
    def cancel(self) -> None: ...
    def finished(self) -> None: ...


async def start_job(job_id: str, request: TtsRequest, voice: VoiceRef, reply_channel: str, text: str = "",
                    done: bool = False) -> Job:
    """``text``/``done``: the request's first text, when the client sent it with the request
    (a job that starts with its text speaks at once: in distributed mode it saves the job a
    round trip to Redis and the wait for its text stream)."""
    return await current().start_job(job_id, request, voice, reply_channel, text, done)
