"""Job events to one consumer's channel, sent from a job thread with backpressure.

The same sink serves both modes: embedded jobs send through the in-memory layer on
the server's event loop, remote jobs through the Redis layer on the worker's loop.
Every event names its job, so a consumer can drop strays from an earlier request.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

#: how long one event may wait for room in a full channel before the job gives up
SEND_TIMEOUT_S = 30.0


class ChannelLayerSink:
    def __init__(self, layer: BaseChannelLayer, channel: str, loop: asyncio.AbstractEventLoop, job_id: str,
                 cancelled: threading.Event) -> None:
        self.layer = layer
        self.channel = channel
        self.loop = loop
        self.job_id = job_id
        self.cancelled = cancelled
        #: time.monotonic() of the last event delivered (a heartbeat is only needed after a quiet spell)
        self.last_sent = 0.0

    def _send(self, event: dict[str, Any]) -> None:
        """Blocking send; waits (bounded) while the client's channel is full instead of dropping."""
        event["job"] = self.job_id
        deadline = time.monotonic() + SEND_TIMEOUT_S
        while True:
            future = asyncio.run_coroutine_threadsafe(self.layer.send(self.channel, event), self.loop)
            try:
                future.result(timeout=SEND_TIMEOUT_S)
                self.last_sent = time.monotonic()
                return
            except ChannelFull:
                if self.cancelled.is_set() or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def started(self) -> None:
        self._send({"type": "tts.started"})

    def chunk(self, index: int, data_b64: str, seconds: float = 0.0) -> None:
        """``seconds``: audio spoken so far in this job (for metering)."""
        self._send({"type": "tts.chunk", "index": index, "data": data_b64, "seconds": round(seconds, 3)})

    def end(self, count: int) -> None:
        self._send({"type": "tts.end", "count": count})

    def error(self, message: str) -> None:
        self._send({"type": "tts.error", "message": message})
