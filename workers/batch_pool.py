"""Embedded mode's batch items: a few daemon threads that take pending items from the database.

The database is the queue (batches/models.py), so nothing is held in memory and nothing is
lost when the server stops: at the next start the items it was running go back to pending
and the threads pick them up again. The engine runs them at background priority
(``background_work``): live streams go first.
"""
from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from batches.execution import Outcome, next_pending_item, release_orphans, run_item
from batches.sweep import upkeep

log = logging.getLogger(__name__)

#: how often an idle thread looks for work nobody woke it for (e.g. an item whose retry is due)
IDLE_POLL_S = 5.0
#: pause after a run that failed for a passing reason, doubling to RETRY_MAX_S
RETRY_BASE_S = 1.0
RETRY_MAX_S = 60.0
#: how often the sweep thread also looks for orphaned blobs
ORPHAN_SWEEP_EVERY_S = 3600.0


class BatchPool:
    def __init__(self, threads: int) -> None:
        self._wake = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"tts-batch-{i}", daemon=True)
                         for i in range(threads)]
        self._threads.append(threading.Thread(target=self._sweep, name="tts-batch-sweep", daemon=True))
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        try:
            released = release_orphans()
            if released:
                log.info("batch items interrupted by the last stop: %d, running them again", released)
        except Exception as exc:  # noqa: BLE001 - no tables yet (before migrate): the threads look later
            log.warning("could not look for interrupted batch items: %s", exc)
        finally:
            close_old_connections()
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        backoff = RETRY_BASE_S
        while True:
            close_old_connections()
            try:
                item = next_pending_item()
            except Exception as exc:  # noqa: BLE001 - the database away for a while: look again later
                log.warning("batch pool: could not look for pending items: %s", exc)
                item = None
            if item is None:
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
                continue
            try:
                outcome = run_item(item)
            except Exception:
                log.exception("batch item %s crashed its run", item)
                outcome = Outcome.RETRY
            if outcome is Outcome.RETRY:
                self._wake.wait(backoff)
                backoff = min(RETRY_MAX_S, backoff * 2)
            else:
                backoff = RETRY_BASE_S

    def _sweep(self) -> None:
        """Callbacks due are retried and expired jobs go every TTS_BATCH_SWEEP_SECONDS, blobs nothing
        points at every hour."""
        orphans_due = 0.0
        while True:
            time.sleep(settings.TTS_BATCH_SWEEP_SECONDS)
            close_old_connections()
            try:
                orphans = time.monotonic() >= orphans_due
                if orphans:
                    orphans_due = time.monotonic() + ORPHAN_SWEEP_EVERY_S
                upkeep(orphans=orphans)
            except Exception as exc:  # noqa: BLE001 - the database or the store away: next period
                log.warning("batch sweep failed: %s", exc)
            finally:
                close_old_connections()
