"""Run the real server (Daphne, and in distributed mode Celery workers) for end-to-end tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from workers.redis_keys import REGISTRATION_TTL_S

REPO = Path(__file__).resolve().parent.parent
ENGINE_DIR = Path(os.environ.get("TTS_TEST_ENGINE_DIR", REPO / "var" / "test-engine"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class RunningServer:
    mode: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: time.monotonic() when kill_workers last killed one (its registration outlives it)
    killed_at: float | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/tts"

    def log_tail(self, n: int = 4000) -> str:
        parts = []
        for path in sorted(self.data_dir.glob("*.log")):
            try:
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-n:]}")
            except OSError:
                pass
        return "\n".join(parts)

    def alive(self) -> bool:
        return self.process.poll() is None and all(w.poll() is None for w in self.workers)

    def health(self) -> dict[str, object]:
        return httpx.get(f"{self.http}/health", timeout=5).json()

    def manage(self, *args: str) -> str:
        """Run a management command against this server's database; returns its stdout."""
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start_web_process(self) -> RunningServer:
        """Another Daphne process on the same database, Redis and workers (distributed mode)."""
        port = free_port()
        log_path = self.data_dir / f"server-{port}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "ttsplatform.asgi:application"],
            cwd=REPO, env=self.env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
        )
        web = RunningServer(self.mode, port, self.data_dir, process, log_path, self.env)
        try:
            _wait_healthy(web, 120)
        except BaseException:
            web.stop()
            raise
        return web

    # --- distributed mode: workers -------------------------------------------------------

    def start_worker(self, queues: str = "synthesis,clone,batch", threads: int | None = None,
                     nice: int = 0) -> subprocess.Popen[bytes]:
        """A Celery worker (``nice``: at that lower CPU priority, as make run-distributed's batch worker)."""
        n = len(self.workers) + 1
        log = open(self.data_dir / f"worker{n}.log", "ab")
        worker = subprocess.Popen(
            [*(["nice", "-n", str(nice)] if nice else []), sys.executable, "-m", "celery", "-A",
             "workers.celery_app", "worker", "-P", "threads",
             "-c", str(threads or self.env.get("TTS_WORKER_STREAMS", "4")), "-Q", queues,
             "--hostname", f"w{n}-{self.port}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-l", "INFO"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, timeout: float = 240) -> None:
        """Wait until ``count`` workers are registered, not counting ones kill_workers killed.

        A SIGKILLed worker stays registered until its last heartbeat's registration expires, so
        counting right after a kill would count the dead worker instead of its loading successor.
        """
        if self.killed_at is not None:
            time.sleep(max(0.0, self.killed_at + REGISTRATION_TTL_S + 0.5 - time.monotonic()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            try:
                if self.health().get("workers", 0) >= count:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{count} workers not ready in {timeout} s:\n{self.log_tail()}")

    def kill_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
        self.workers.clear()
        self.killed_at = time.monotonic()

    def stop(self) -> None:
        for worker in self.workers:
            _stop(worker, timeout=30)
        _stop(self.process)


def start_server(data_dir: Path, mode: str = "embedded", extra_env: dict[str, str] | None = None,
                 ready_timeout: float = 240.0, workers: int = 2,
                 worker_specs: list[dict[str, Any]] | None = None) -> RunningServer:
    """Migrate, start Daphne (and in distributed mode ``workers`` Celery workers), wait until ready.

    ``worker_specs``: start_worker's arguments for each worker, instead of ``workers`` alike.
    Distributed mode needs TTS_REDIS_URL, TTS_DATABASE_URL and a TTS_FEATURE_STORE every
    process can reach in ``extra_env`` (see tests/conftest.py).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TTS_MODE": mode,
        "TTS_DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "ttsplatform.settings",
        "PYTHONUNBUFFERED": "1",
        # One engine directory for every test server: the model is assembled and the
        # stock-voice embeddings computed once per test session, not once per server.
        "TTS_ENGINE_DIR": str(ENGINE_DIR),
        # Clone refinement is a minute of background CPU per clone: off unless a test asks
        # for it (tests/e2e/test_refine.py), so other tests' timings are not disturbed.
        "TTS_REFINE": "0",
        # Batch callbacks go to a receiver on this machine; sweeps (callback retries, lost items) every 2 s.
        "TTS_CALLBACK_ALLOW_PRIVATE_URLS": "1",
        "TTS_BATCH_SWEEP_SECONDS": "2",
        **(extra_env or {}),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    log_path = data_dir / "server.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "ttsplatform.asgi:application"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    server = RunningServer(mode, port, data_dir, process, log_path, env)
    try:
        if mode == "distributed":
            specs = worker_specs if worker_specs is not None else [{}] * workers
            for spec in specs:
                server.start_worker(**spec)
            server.wait_for_workers(len(specs), ready_timeout)
        _wait_healthy(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_healthy(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"server exited early:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.http}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not ready in {timeout} s:\n{server.log_tail()}")
