"""Run the real server (Daphne, real sockets) for end-to-end tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
ENGINE_DIR = Path(os.environ.get("TTS_TEST_ENGINE_DIR", REPO / "var" / "test-engine"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    mode: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/tts"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(data_dir: Path, mode: str = "embedded", extra_env: dict[str, str] | None = None,
                 ready_timeout: float = 240.0) -> RunningServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TTS_DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "ttsplatform.settings",
        "PYTHONUNBUFFERED": "1",
        # One engine directory for every test server: the model is assembled and the
        # stock-voice embeddings computed once per test session, not once per server.
        "TTS_ENGINE_DIR": str(ENGINE_DIR),
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
    server = RunningServer(mode, port, data_dir, process, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"server exited early:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.http}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"server not ready in {ready_timeout} s:\n{server.log_tail()}")
