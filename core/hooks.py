"""A lower layer's way to call code from a layer above it, which it cannot import.

The upper layer installs a provider when Django starts (``workers/apps.py``); the lower
layer calls the hook. Used where the mode decides what happens: voices asks for the job
backend (run a clone here or on a worker), tenants for its quota counters (memory or Redis).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Hook(Generic[T]):
    """``hook()`` returns what the installed provider returns now."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._provider: Callable[[], T] | None = None

    def install(self, provider: Callable[[], T]) -> None:
        self._provider = provider

    def __call__(self) -> T:
        if self._provider is None:
            raise RuntimeError(f"{self.what} is not installed: the 'workers' app must be in INSTALLED_APPS")
        return self._provider()
