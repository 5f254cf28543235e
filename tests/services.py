"""Real backing services for the distributed-mode tests: a private Redis server (so a
test may restart it) and a fresh PostgreSQL database per test session."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.server import free_port

#: The PostgreSQL server the tests create their databases in (trust auth on this machine).
POSTGRES_ADMIN_URL = os.environ.get("TTS_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


@dataclass
class RedisServer:
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.data_dir), "--logfile", str(self.log_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down_seconds: float = 1.0) -> None:
        """Kill Redis (everything in it is lost, as in a real crash) and start it again."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


def start_redis(data_dir: Path) -> RedisServer:
    server = RedisServer(free_port(), data_dir)
    server.start()
    return server


def private_redis(name: str) -> Any:
    """A module-scoped fixture: a Redis server of the module's own, for tests that flush,
    fill, restart or kill it (the session's ``redis_server`` serves the shared stacks)."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
        server = start_redis(tmp_path_factory.mktemp(name))
        yield server
        server.stop()

    return fixture


@dataclass
class PostgresDatabase:
    name: str
    url: str

    def drop(self) -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def create_database() -> PostgresDatabase:
    name = f"tts_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}") from None
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return PostgresDatabase(name, f"{base}/{name}")
