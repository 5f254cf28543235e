"""A request that needs the engine before it is warm is answered at once, in both modes:
503 JSON with Retry-After on REST, an error frame and close 4503 on /tts. Once the engine is
warm (embedded) or a worker has registered (distributed), the same requests succeed.

Embedded mode: the server restarts on a data directory that already holds a voice, with
TTS_PRELOAD_ENGINE=0 (documented in ttsplatform/settings.py: the engine loads on first use),
so the engine is certainly cold when the first requests arrive -- they start its loading.
Distributed mode: the stack's only worker is killed and its registration expires.
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import stream_tts
from tests.s3server import S3Server
from tests.server import REPO, RunningServer, free_port, start_server
from tests.services import RedisServer, create_database, start_redis

KEPT = "warmup-kept"
#: a request that waits for the engine instead of answering would take seconds (minutes on a busy machine)
AT_ONCE_S = 5.0


def clone_body(wav: bytes, prompt_id: str) -> dict[str, str]:
    return {"prompt_audio": base64.b64encode(wav).decode(), "prompt_text": PROMPT_TEXTS["jf_alpha"],
            "prompt_id": prompt_id}


def tts_reply(server: RunningServer, prompt_id: str) -> tuple[dict, int | None]:
    """The first frame /tts sends for a request, and its close code."""
    with connect(server.ws, open_timeout=10) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": prompt_id, "audio_format": "pcm"},
                            "text": "你好。", "done": True}))
        reply = json.loads(ws.recv(timeout=AT_ONCE_S))
        try:
            ws.recv(timeout=AT_ONCE_S)
        except Exception as exc:
            return reply, getattr(getattr(exc, "rcvd", None), "code", None)
    return reply, None


def assert_not_ready_at_once(server: RunningServer, wav: bytes) -> None:
    started = time.monotonic()
    reply, code = tts_reply(server, KEPT)
    assert reply.get("error") is True and reply["message"], reply
    assert code == 4503, (code, reply)
    response = httpx.post(f"{server.http}/clone", json=clone_body(wav, "warmup-new"), timeout=120)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] is True and body["message"], body
    assert int(response.headers["Retry-After"]) > 0
    assert time.monotonic() - started < 2 * AT_ONCE_S


def assert_serves(server: RunningServer) -> None:
    result = stream_tts(server.ws, {"prompt_id": KEPT, "audio_format": "pcm"}, [], final_text="你好。")
    assert not result.errors and result.audio and result.end is not None, result.messages


def wait_for_health(server: RunningServer, status: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.alive(), server.log_tail()
        try:
            if httpx.get(f"{server.http}/health", timeout=2).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"/health never answered {status}:\n{server.log_tail()}")


def start_cold(warm: RunningServer) -> RunningServer:
    """Daphne again on ``warm``'s data, its engine left unloaded until a request needs it."""
    env = {**warm.env, "TTS_PRELOAD_ENGINE": "0"}
    port = free_port()
    log_path = warm.data_dir / "server-cold.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "ttsplatform.asgi:application"],
        cwd=REPO, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
    )
    return RunningServer("embedded", port, warm.data_dir, process, log_path, env)


def test_embedded_requests_before_the_engine_is_warm_are_answered_503_at_once(
        tmp_path: Path, prompt_wavs: dict[str, bytes]) -> None:
    warm = start_server(tmp_path / "data")
    try:
        response = httpx.post(f"{warm.http}/clone", json=clone_body(prompt_wavs["jf_alpha"], KEPT), timeout=120)
        assert response.status_code == 200, response.text
    finally:
        warm.stop()
    cold = start_cold(warm)
    try:
        wait_for_health(cold, 503)  # serving, engine not loaded
        assert cold.health()["warm"] is False
        assert_not_ready_at_once(cold, prompt_wavs["jf_alpha"])
        wait_for_health(cold, 200)  # the refused requests started the engine's loading
        assert_serves(cold)
    finally:
        cold.stop()


@pytest.fixture
def distributed(tmp_path: Path, s3_server: S3Server, prompt_wavs: dict[str, bytes]) -> Iterator[RunningServer]:
    """A private stack (Redis, database, bucket) with one worker and the voice KEPT."""
    redis_server: RedisServer = start_redis(tmp_path / "redis")
    database = create_database()
    s3_server.create_bucket("tts-warmup")
    env = {**s3_server.env(), "TTS_REDIS_URL": redis_server.url, "TTS_DATABASE_URL": database.url,
           "TTS_FEATURE_STORE": "s3://tts-warmup/features"}
    server = None
    try:
        server = start_server(tmp_path / "stack", mode="distributed", extra_env=env, workers=1)
        response = httpx.post(f"{server.http}/clone", json=clone_body(prompt_wavs["jf_alpha"], KEPT), timeout=120)
        assert response.status_code == 200, response.text
        yield server
    finally:
        if server is not None:
            server.stop()
        database.drop()
        redis_server.stop()


def test_distributed_requests_without_a_ready_worker_are_answered_503_at_once(
        distributed: RunningServer, prompt_wavs: dict[str, bytes]) -> None:
    distributed.kill_workers()
    wait_for_health(distributed, 503, timeout=30)  # its registration expired
    assert_not_ready_at_once(distributed, prompt_wavs["jf_alpha"])
    distributed.start_worker()
    distributed.wait_for_workers(1)
    assert_serves(distributed)
