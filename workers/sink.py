"""Job events to one consumer's channel, sent from a job thread with backpressure.

The same sink serves both modes: embedded jobs send through the in-memory layer on
the server's event loop, remote jobs through the Redis layer on the worker's loop.
Every event names its job, so a consumer can drop strays from an earlier request.

Sends are pipelined: the job thread hands an event to the loop and goes on speaking
while it is delivered (a Redis round trip per chunk would otherwise delay every next
clause). Events still go out one at a time, in order, and at most ``MAX_IN_FLIGHT`` wait
on the loop: beyond that, and at the end of the job, the thread waits for delivery.
A delivery that fails fails the job thread's next call, and no later event is sent,
so the consumer never sees a gap.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from concurrent.futures import Future
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from workers import events

#: how long one event may wait for room in a full channel before the job gives up
SEND_TIMEOUT_S = 30.0
#: events handed to the loop and not yet delivered, at most, before the job thread waits
MAX_IN_FLIGHT = 4
#: how often a delivery looks again at a full channel
FULL_RETRY_S = 0.02


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
        self._in_flight: collections.deque[Future[None]] = collections.deque()
        self._order: asyncio.Lock | None = None  # created and used on the loop only
        self._failure: BaseException | None = None  # set on the loop: later events are not sent

    def _send(self, event: events.JobEvent, wait: bool = False) -> None:
        """Hand ``event`` to the loop; ``wait``: return only once everything is delivered.
        Raises the failure of an earlier delivery (ChannelFull: the client stopped reading)."""
        self._settle(MAX_IN_FLIGHT - 1)
        self._in_flight.append(asyncio.run_coroutine_threadsafe(self._deliver(event.as_message()), self.loop))
        self._settle(0 if wait else MAX_IN_FLIGHT)

    def _settle(self, keep: int) -> None:
        """Wait until at most ``keep`` events are in flight; raise the first failure seen."""
        while self._in_flight and (len(self._in_flight) > keep or self._in_flight[0].done()):
            self._in_flight.popleft().result(timeout=SEND_TIMEOUT_S + 5)

    async def _deliver(self, event: dict[str, Any]) -> None:
        if self._order is None:
            self._order = asyncio.Lock()
        async with self._order:  # FIFO: events leave in the order the job handed them over
            if self._failure is not None:
                raise self._failure
            deadline = time.monotonic() + SEND_TIMEOUT_S
            try:
                while True:  # a full channel: wait (bounded) for the client to read, never drop
                    try:
                        await self.layer.send(self.channel, event)
                        break
                    except ChannelFull:
                        if self.cancelled.is_set() or time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(FULL_RETRY_S)
            except BaseException as exc:
                self._failure = exc
                raise
            self.last_sent = time.monotonic()

    def started(self) -> None:
        """A worker has the job: marks it alive for the consumer (not waited for)."""
        self._send(events.Started(self.job_id))

    def chunk(self, index: int, data_b64: str, seconds: float = 0.0) -> None:
        """``seconds``: audio spoken so far in this job (for metering)."""
        self._send(events.Chunk(self.job_id, index, data_b64, round(seconds, 3)))

    def end(self, count: int) -> None:
        self._send(events.End(self.job_id, count), wait=True)

    def error(self, message: str) -> None:
        self._send(events.Error(self.job_id, message), wait=True)
