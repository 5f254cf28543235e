"""Embedded mode's refinements: one daemon thread and a bounded queue.

A daemon thread, so stopping the server never waits for a search; the voice it was
refining is marked ready at the next start (``voices.refine.recover_after_restart``).
"""
from __future__ import annotations

import logging
import queue
import threading

from django.db import close_old_connections

from voices import refine

log = logging.getLogger(__name__)


class RefineQueue:
    def __init__(self, max_pending: int) -> None:
        self._slots = threading.BoundedSemaphore(max_pending + 1)  # + the one running
        self._jobs: queue.SimpleQueue[tuple[int, str, str]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tts-refine", daemon=True)
        self._thread.start()

    def submit(self, voice_id: int, features_key: str, features_sha256: str) -> bool:
        """Queue a refinement; False at once when the queue is full."""
        if not self._slots.acquire(blocking=False):
            return False
        self._jobs.put((voice_id, features_key, features_sha256))
        return True

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            close_old_connections()
            try:
                refine.refine_voice(*job)
            except Exception:
                log.exception("refinement of voice %s crashed", job[0])
            finally:
                close_old_connections()
                self._slots.release()
