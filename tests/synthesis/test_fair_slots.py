"""FairSlots: model run slots in arrival order, which a stopped stream can leave."""
from __future__ import annotations

import threading
import time

import pytest

from synthesis.engines.base import StopSignal, StreamStopped
from synthesis.engines.fair_slots import FairSlots


def _queue_up(slots: FairSlots, name: str, order: list[str], stop: StopSignal | None = None) -> threading.Thread:
    def run() -> None:
        try:
            slots.acquire(stop)
        except StreamStopped:
            order.append(f"{name} stopped")
            return
        order.append(name)
        time.sleep(0.01)
        slots.release()

    before = slots.waiting
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 5
    while slots.waiting == before:  # queued before the next one comes
        assert time.monotonic() < deadline
        time.sleep(0.001)
    return thread


def test_slots_go_to_waiters_in_the_order_they_came() -> None:
    slots = FairSlots(1)
    slots.acquire()
    order: list[str] = []
    threads = [_queue_up(slots, f"w{i}", order) for i in range(8)]
    slots.release()
    for t in threads:
        t.join(5)
    assert order == [f"w{i}" for i in range(8)]


def test_a_released_slot_is_not_taken_back_past_the_queue() -> None:
    slots = FairSlots(1)
    slots.acquire()
    order: list[str] = []
    waiter = _queue_up(slots, "waiter", order)
    slots.release()
    slots.acquire()  # the releasing stream asks again at once: it queues behind the waiter
    order.append("again")
    slots.release()
    waiter.join(5)
    assert order == ["waiter", "again"]


def test_a_stopped_waiter_leaves_the_queue_and_the_others_keep_their_turn() -> None:
    slots = FairSlots(1)
    slots.acquire()
    order: list[str] = []
    stop = StopSignal()
    first = _queue_up(slots, "first", order)
    leaver = _queue_up(slots, "leaver", order, stop)
    last = _queue_up(slots, "last", order)
    stop.set()
    leaver.join(5)
    assert order == ["leaver stopped"]
    assert slots.waiting == 2
    slots.release()
    first.join(5)
    last.join(5)
    assert order == ["leaver stopped", "first", "last"]


def test_a_stopped_stream_takes_no_slot() -> None:
    slots = FairSlots(1)
    stop = StopSignal()
    stop.set()
    with pytest.raises(StreamStopped):
        slots.acquire(stop)
    slots.acquire()  # the slot was never taken
    slots.release()


def test_a_waiter_stopped_as_its_turn_comes_passes_the_slot_on() -> None:
    """Stop and grant race: whichever wins, no slot is lost and the next waiter gets one."""
    for _ in range(50):
        slots = FairSlots(1)
        slots.acquire()
        order: list[str] = []
        stop = StopSignal()
        racer = _queue_up(slots, "racer", order, stop)
        follower = _queue_up(slots, "follower", order)
        threading.Thread(target=stop.set).start()
        slots.release()
        racer.join(5)
        follower.join(5)
        assert order[-1] == "follower" and order[0] in ("racer", "racer stopped"), order
        slots.acquire()  # one slot, free again
        slots.release()


def test_more_slots_run_that_many_at_once() -> None:
    slots = FairSlots(2)
    slots.acquire()
    slots.acquire()
    assert slots.waiting == 0
    got = threading.Event()
    t = threading.Thread(target=lambda: (slots.acquire(), got.set()))
    t.start()
    assert not got.wait(0.1)
    slots.release()
    assert got.wait(5)
    t.join(5)
