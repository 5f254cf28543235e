"""Embedded-mode job dispatch: synthesis jobs in this process's thread pool, audio back
through the (in-memory) channel layer, exactly as a remote worker would send it."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings

from synthesis.engines.base import Features
from synthesis.engines.registry import get_loaded_engine
from synthesis.job import TextInbox, run_synthesis
from synthesis.protocol import TtsRequest
from workers.executors import pool

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0


class ChannelLayerSink:
    """Sends job events to one consumer's channel from a worker thread, with backpressure."""

    def __init__(self, layer: BaseChannelLayer, channel: str, loop: asyncio.AbstractEventLoop, inbox: TextInbox) -> None:
        self.layer = layer
        self.channel = channel
        self.loop = loop
        self.inbox = inbox

    def _send(self, message: dict[str, Any]) -> None:
        deadline = time.monotonic() + SEND_TIMEOUT_S
        while True:
            future = asyncio.run_coroutine_threadsafe(self.layer.send(self.channel, message), self.loop)
            try:
                future.result(timeout=SEND_TIMEOUT_S)
                return
            except ChannelFull:
                if self.inbox.cancelled.is_set() or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def chunk(self, index: int, data_b64: str) -> None:
        self._send({"type": "tts.chunk", "index": index, "data": data_b64})

    def end(self, count: int) -> None:
        self._send({"type": "tts.end", "count": count})

    def error(self, message: str) -> None:
        self._send({"type": "tts.error", "message": message})


@dataclass
class EmbeddedJob:
    inbox: TextInbox

    def send_text(self, text: str, done: bool) -> None:
        self.inbox.put(text, done)

    def cancel(self) -> None:
        self.inbox.cancel()


def start_job(request: TtsRequest, features: Features, reply_channel: str) -> EmbeddedJob:
    """Start a synthesis job in the stream pool (call from the event loop).

    The pool has one thread per allowed stream and no queue, so a stream over
    TTS_MAX_STREAMS is refused with ServerBusy, never queued silently.
    """
    inbox = TextInbox(capacity=settings.TTS_MAX_TEXT_CHARS + 2)
    sink = ChannelLayerSink(get_channel_layer(), reply_channel, asyncio.get_running_loop(), inbox)

    def work() -> None:
        try:
            run_synthesis(get_loaded_engine(), features, request, inbox, sink)
        except Exception as exc:  # the job's one boundary: report, never hang the client
            if inbox.cancelled.is_set():
                return
            log.exception("synthesis job failed")
            try:
                sink.error(f"synthesis failed: {exc.__class__.__name__}")
            except Exception:
                log.exception("could not report the failure to the client")

    pool("stream").submit(work)
    return EmbeddedJob(inbox)
