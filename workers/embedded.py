"""Embedded-mode jobs: synthesis in this process's stream pool, audio back through the
in-memory channel layer, exactly as a remote worker would send it."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from channels.layers import get_channel_layer
from django.conf import settings

from synthesis.engines.registry import get_ready_engine
from synthesis.job import TextInbox
from synthesis.request import TtsRequest
from workers.executors import pool
from workers.runner import VoiceRef, run_job
from workers.sink import ChannelLayerSink


@dataclass
class EmbeddedJob:
    job_id: str
    inbox: TextInbox
    remote = False

    async def send_text(self, text: str, done: bool) -> None:
        self.inbox.put(text, done)  # non-blocking; queue.Full when the client floods

    def saw_event(self) -> None:
        pass

    def liveness_problem(self) -> str | None:
        return None  # the job runs in this process: it cannot vanish without the process

    def cancel(self) -> None:
        self.inbox.cancel()

    def finished(self) -> None:
        pass


def start_embedded_job(job_id: str, request: TtsRequest, voice: VoiceRef, reply_channel: str, text: str = "",
                       done: bool = False) -> EmbeddedJob:
    """Start a job in the stream pool (call from the event loop).

    The pool has one thread per allowed stream and no queue, so a stream over
    TTS_MAX_STREAMS is refused with ServerBusy, never queued silently; one before the engine
    is warm is refused with NotReady, as distributed mode refuses one no worker can take.
    """
    get_ready_engine()
    inbox = TextInbox(capacity=settings.TTS_MAX_TEXT_CHARS + 2)
    inbox.put(text, done)
    sink = ChannelLayerSink(get_channel_layer(), reply_channel, asyncio.get_running_loop(), job_id, inbox.cancelled)
    pool("stream").submit(lambda: run_job(job_id, request, voice, inbox, sink))
    return EmbeddedJob(job_id, inbox)
