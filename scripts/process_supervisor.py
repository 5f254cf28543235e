"""Keep the launcher's child processes running: restart a crashed one, stop all in order.

`make run-distributed` is a whole service on one machine, so one crashed worker (out of
memory, a native crash, a stray `kill -9`) must not take Daphne and every open WebSocket
down with it. A process that exits without being asked to is started again after a
back-off (1 s, doubling up to 30 s while it keeps crashing soon after each start; back to
1 s once it has run a minute), and every exit and restart is logged. Stopping is the
reverse of starting, one stage at a time: workers first (they drain their streams while
Daphne still relays the audio), then Daphne, then the services.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

#: first restart delay; doubled per crash in a row, capped at BACKOFF_MAX_S
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
#: a process that ran this long before it exited counts as healthy: the back-off starts again
STABLE_AFTER_S = 60.0
#: Linux prctl option: a signal for the child when the parent dies
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A hook for the child before exec: get SIGTERM when the launcher dies, even by SIGKILL,
    so a killed launcher leaves no worker or Daphne holding the port for the next start."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
    except (OSError, AttributeError):  # not Linux: children simply outlive a killed launcher
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(1)
    return hook


def describe_exit(code: int) -> str:
    """`code 1` or `signal 9 (SIGKILL)`, from a Popen returncode."""
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


@dataclass
class Service:
    """One supervised process: how to start it and how it has fared."""

    name: str
    command: list[str]
    #: lower stages stop first (workers 0, web 1, services 2)
    stage: int
    #: seconds it may take to stop after SIGTERM before it is killed
    stop_timeout: float
    cwd: str | None = None
    env: dict[str, str] | None = None
    stdout: IO[bytes] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    #: crashes in a row, each soon after its start (drives the back-off)
    crashes: int = 0
    restarts: int = 0
    #: time.monotonic() at which a crashed process is started again
    restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Starts services, restarts the ones that die, stops them all in stage order."""

    def __init__(self, say: Callable[[str], None], *, backoff_min: float = BACKOFF_MIN_S,
                 backoff_max: float = BACKOFF_MAX_S, stable_after: float = STABLE_AFTER_S) -> None:
        self.say = say
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.services: list[Service] = []
        self.stopping = False
        self.force = False

    def start(self, service: Service) -> Service:
        """Start ``service`` now and supervise it from here on."""
        if service not in self.services:
            self.services.append(service)
        self._spawn(service)
        return service

    def _spawn(self, service: Service) -> None:
        # Its own process group: a Ctrl-C in the terminal reaches only the launcher, which then
        # stops everything in order, instead of every process at once (and none restarted).
        service.process = subprocess.Popen(
            service.command, cwd=service.cwd, env=service.env, stdin=subprocess.DEVNULL, stdout=service.stdout,
            stderr=subprocess.STDOUT if service.stdout is not None else None, process_group=0,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        service.started_at = time.monotonic()
        service.restart_at = None

    def backoff(self, crashes: int) -> float:
        """Delay before restart number ``crashes`` of a run of quick crashes."""
        return min(self.backoff_max, self.backoff_min * 2 ** max(0, crashes - 1))

    def check(self) -> None:
        """Notice exits, schedule restarts, carry out the ones that are due (call it often)."""
        if self.stopping:
            return
        now = time.monotonic()
        for service in self.services:
            process = service.process
            if service.restart_at is not None:
                if now >= service.restart_at:
                    service.restarts += 1
                    self._spawn(service)
                    self.say(f"restarted {service.name} (pid {service.pid}; restart {service.restarts})")
                continue
            if process is None or process.poll() is None:
                continue
            ran = now - service.started_at
            service.crashes = 1 if ran >= self.stable_after else service.crashes + 1
            delay = self.backoff(service.crashes)
            service.restart_at = now + delay
            self.say(f"{service.name} (pid {process.pid}) exited with {describe_exit(process.returncode)} "
                     f"after {ran:.1f} s; restarting it in {delay:g} s")

    def stop(self) -> None:
        """SIGTERM each stage and wait for it before the next; kill what overstays its timeout
        (or everything, once ``force`` is set by a second Ctrl-C)."""
        self.stopping = True
        for stage in sorted({s.stage for s in self.services}):
            group = [s for s in self.services if s.stage == stage and s.running()]
            for service in group:
                self.say(f"stopping {service.name} (pid {service.pid})")
                self._signal(service, signal.SIGKILL if self.force else signal.SIGTERM)
            for service in group:
                self._wait(service)

    def _wait(self, service: Service) -> None:
        assert service.process is not None
        deadline = time.monotonic() + service.stop_timeout
        while service.process.poll() is None:
            if self.force or time.monotonic() >= deadline:
                self.say(f"killing {service.name} (pid {service.pid})")
                self._signal(service, signal.SIGKILL)
                service.process.wait(timeout=10)
                return
            time.sleep(0.1)

    @staticmethod
    def _signal(service: Service, signum: signal.Signals) -> None:
        if service.process is not None and service.process.poll() is None:
            try:
                service.process.send_signal(signum)
            except ProcessLookupError:
                pass
