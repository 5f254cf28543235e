from __future__ import annotations

import threading
import time

from core.lazy import process_wide


def test_the_object_is_made_once_however_many_threads_ask_at_once() -> None:
    made: list[object] = []

    @process_wide
    def thing() -> object:
        time.sleep(0.05)  # long enough for every thread to arrive while the first is making it
        made.append(object())
        return made[-1]

    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(thing())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and all(g is made[0] for g in got) and len(got) == 8
    assert thing() is made[0]


def test_a_factory_that_fails_is_tried_again_next_time() -> None:
    calls = []

    @process_wide
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("not yet")
        return "ready"

    try:
        flaky()
    except OSError:
        pass
    assert flaky() == "ready" and flaky() == "ready" and len(calls) == 2
