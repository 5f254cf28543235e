"""StopSignal: the callbacks that let an engine abort work in flight when a stream is stopped."""
from __future__ import annotations

import threading

from synthesis.engines.base import StopSignal
from synthesis.job import JobCancelled, TextInbox


def test_callbacks_run_once_when_set_and_not_after_they_are_forgotten() -> None:
    stop = StopSignal()
    calls: list[str] = []
    stop.on_set(lambda: calls.append("kept"))
    forget = stop.on_set(lambda: calls.append("forgotten"))
    forget()
    assert calls == []
    stop.set()
    stop.set()
    assert calls == ["kept"]
    assert stop.is_set()


def test_a_callback_registered_after_the_signal_runs_at_once() -> None:
    stop = StopSignal()
    stop.set()
    calls: list[int] = []
    forget = stop.on_set(lambda: calls.append(1))
    assert calls == [1]
    forget()  # harmless


def test_a_failing_callback_does_not_keep_the_others_from_running() -> None:
    stop = StopSignal()
    calls: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    stop.on_set(broken)
    stop.on_set(lambda: calls.append(1))
    stop.set()
    assert calls == [1]


def test_a_signal_set_from_another_thread_wakes_a_waiter() -> None:
    stop = StopSignal()
    threading.Timer(0.05, stop.set).start()
    assert stop.wait(timeout=5)


def test_cancelling_an_inbox_sets_its_stop_signal() -> None:
    inbox = TextInbox(capacity=4)
    aborted: list[int] = []
    inbox.cancelled.on_set(lambda: aborted.append(1))
    inbox.cancel()
    assert aborted == [1]
    try:
        next(inbox.pieces())
    except JobCancelled:
        pass
    else:
        raise AssertionError("a cancelled inbox yielded a piece")
