"""Model run slots handed out first come, first served, that a stopped stream can leave.

``threading.Semaphore`` does not promise an order: with more streams than slots, a
thread that releases and asks again, or one that re-queues after a timed wait, can pass
others over and starve them (measured: with 16 Kokoro streams on one slot, p95 time to
first audio went from 5 s to 28 s). Here each waiter holds a ticket in a queue, and a
released slot goes to the oldest ticket.
"""
from __future__ import annotations

import threading
from collections import deque

from synthesis.engines.base import StopSignal, StreamStopped


class _Ticket:
    __slots__ = ("granted", "ready")

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.granted = False


class FairSlots:
    def __init__(self, count: int) -> None:
        self._free = max(1, int(count))
        self._lock = threading.Lock()
        self._queue: deque[_Ticket] = deque()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._queue)

    def acquire(self, stop: StopSignal | None = None) -> None:
        """Wait for a slot, in arrival order; raises StreamStopped if ``stop`` is set first."""
        if stop is not None and stop.is_set():
            raise StreamStopped()
        with self._lock:
            if self._free and not self._queue:
                self._free -= 1
                return
            ticket = _Ticket()
            self._queue.append(ticket)
        forget = stop.on_set(ticket.ready.set) if stop is not None else None
        try:
            ticket.ready.wait()
        finally:
            if forget is not None:
                forget()
        with self._lock:
            if ticket.granted:
                if stop is None or not stop.is_set():
                    return
                self._hand_on()  # granted and stopped at once: pass the slot to the next in line
            else:
                self._queue.remove(ticket)
        raise StreamStopped()

    def release(self) -> None:
        with self._lock:
            self._hand_on()

    def _hand_on(self) -> None:
        if self._queue:
            ticket = self._queue.popleft()
            ticket.granted = True
            ticket.ready.set()
        else:
            self._free += 1
