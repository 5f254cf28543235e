"""One object per process, made on first use: engines' encoders, counters, queues, runtimes."""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def process_wide(factory: Callable[[], T]) -> Callable[[], T]:
    """Decorate a zero-argument factory: the first call makes the object (once, however many
    threads call at the same time), every later call returns that same object."""
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(factory)
    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(factory())
        return made[0]

    return get
