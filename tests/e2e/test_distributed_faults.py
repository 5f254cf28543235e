"""Distributed mode under faults: a killed worker, a client that leaves, a Redis restart,
a worker told to stop, a stream no worker takes in time. Each case ends in a complete stream or a clear error, never a hang.

These tests break things, so they get their own stack: a private Redis, a fresh
PostgreSQL database, features in the session's S3 server, Daphne and one worker.
"""
from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from websockets.sync.client import connect

from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import stream_tts
from tests.s3server import S3Server
from tests.server import RunningServer, start_server
from tests.services import RedisServer, create_database, private_redis
from workers import redis_keys

LONG_ZH = "今天天气很好。" * 12
PARAMS = {"prompt_id": "fault-voice", "audio_format": "pcm", "sample_rate": 16000}


fault_redis = private_redis("fault-redis")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, fault_redis: RedisServer,
          prompt_wavs: dict[str, bytes]) -> Iterator[RunningServer]:
    database = create_database()
    s3_server.create_bucket("tts-faults")
    env = {
        **s3_server.env(),
        "TTS_REDIS_URL": fault_redis.url,
        "TTS_DATABASE_URL": database.url,
        "TTS_FEATURE_STORE": "s3://tts-faults/features",
        "TTS_WORKER_DRAIN_SECONDS": "6",
        "TTS_JOB_START_TIMEOUT": "5",
    }
    server = start_server(tmp_path_factory.mktemp("fault-stack"), mode="distributed", extra_env=env, workers=1)
    try:
        body = {"prompt_audio": base64.b64encode(prompt_wavs["jf_alpha"]).decode(),
                "prompt_text": PROMPT_TEXTS["jf_alpha"], "prompt_id": PARAMS["prompt_id"]}
        response = httpx.post(f"{server.http}/clone", json=body, timeout=120)
        assert response.status_code == 200, response.text
        yield server
    finally:
        server.stop()
        database.drop()


@pytest.fixture
def healthy(stack: RunningServer) -> RunningServer:
    """The stack with one live worker (a test before may have killed or stopped it)."""
    if not stack.workers or any(w.poll() is not None for w in stack.workers):
        stack.kill_workers()
        stack.start_worker()
    stack.wait_for_workers(1)
    return stack


def _complete(result) -> None:
    assert not result.errors, result.errors
    assert result.end is not None
    assert [m["index"] for m in result.audio] == list(range(len(result.audio)))
    assert result.end["index"] == len(result.audio)


class RunningStream:
    """A stream kept open by the test: text is sent, done is not, until the test says so."""

    def __init__(self, server: RunningServer) -> None:
        self.ws = connect(server.ws, open_timeout=10, close_timeout=2, max_size=None)
        self.ws.send(json.dumps({"req_params": PARAMS}))
        self.ws.send(json.dumps({"text": LONG_ZH, "done": False}, ensure_ascii=False))
        self.messages: list[dict] = []

    def next_message(self, timeout: float = 60) -> dict:
        message = json.loads(self.ws.recv(timeout=timeout))
        self.messages.append(message)
        return message

    def first_audio(self) -> dict:
        message = self.next_message()
        assert not message.get("error"), message
        return message


def test_a_killed_worker_is_an_error_within_5_s_not_a_hang(healthy: RunningServer) -> None:
    stream = RunningStream(healthy)
    stream.first_audio()
    healthy.workers[0].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    while True:
        message = stream.next_message(timeout=10)
        if message.get("error") or message.get("is_end"):
            break
    waited = time.monotonic() - killed_at
    assert message.get("error") is True, message
    assert "worker" in message["message"]
    assert waited < 5.0, f"error after {waited:.1f} s"
    with pytest.raises(Exception) as closed:
        stream.ws.recv(timeout=5)
    assert getattr(getattr(closed.value, "rcvd", None), "code", None) == 4500
    healthy.workers[0].wait(timeout=10)


def test_a_web_process_that_stalls_longer_than_the_heartbeat_timeout_keeps_its_stream(healthy: RunningServer) -> None:
    """Daphne's event loop stops for 4 s (a CPU-starved or paused host) while its worker keeps
    speaking: when it resumes, the audio and heartbeats queued meanwhile say the worker is
    alive, and the stream must complete, not be failed as "stopped responding"."""
    stream = RunningStream(healthy)
    stream.first_audio()
    healthy.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(4.0)  # TTS_JOB_HEARTBEAT_TIMEOUT is 3 s
    finally:
        healthy.process.send_signal(signal.SIGCONT)
    stream.ws.send(json.dumps({"text": "", "done": True}))
    while True:
        message = stream.next_message(timeout=60)
        if message.get("error") or message.get("is_end"):
            break
    assert message.get("is_end") is True, message
    audio = [m for m in stream.messages if "index" in m and not m.get("is_end")]
    assert [m["index"] for m in audio] == list(range(len(audio)))
    stream.ws.close()


def test_a_client_that_leaves_cancels_its_job_within_1_s(healthy: RunningServer, fault_redis: RedisServer) -> None:
    stream = RunningStream(healthy)
    job_id = stream.first_audio()["id"]
    client = redis.Redis.from_url(fault_redis.url)
    deadline = time.monotonic() + 5
    while client.zscore(redis_keys.ACTIVE_JOBS, job_id) is None:  # registered by the next heartbeat
        assert time.monotonic() < deadline, "job never registered as running"
        time.sleep(0.05)
    stream.ws.close()
    closed_at = time.monotonic()
    while client.zscore(redis_keys.ACTIVE_JOBS, job_id) is not None:
        assert time.monotonic() - closed_at < 1.0, "job still running 1 s after its client left"
        time.sleep(0.02)
    # The worker is free again: a new stream completes.
    _complete(stream_tts(healthy.ws, PARAMS, ["好的。"]))


def test_a_redis_restart_is_survived_without_restarting_anything(healthy: RunningServer,
                                                                fault_redis: RedisServer) -> None:
    _complete(stream_tts(healthy.ws, PARAMS, ["重启之前。"]))
    fault_redis.restart()
    healthy.wait_for_workers(1, timeout=60)  # the worker re-registers once it has reconnected
    assert healthy.alive()
    result = stream_tts(healthy.ws, PARAMS, ["重启之后，一切正常。"])
    _complete(result)
    assert httpx.get(f"{healthy.http}/speakers", timeout=10).json() == [PARAMS["prompt_id"]]


def test_sigterm_lets_a_running_stream_finish(healthy: RunningServer) -> None:
    worker = healthy.workers[0]
    with connect(healthy.ws, open_timeout=10, max_size=None) as ws:
        ws.send(json.dumps({"req_params": PARAMS}))
        ws.send(json.dumps({"text": "第一句话。第二句话。第三句话。", "done": True}, ensure_ascii=False))
        messages = [json.loads(ws.recv(timeout=60))]
        worker.send_signal(signal.SIGTERM)
        while not (messages[-1].get("is_end") or messages[-1].get("error")):
            messages.append(json.loads(ws.recv(timeout=30)))
    assert messages[-1].get("is_end") is True, messages[-1]
    assert [m["index"] for m in messages[:-1]] == list(range(len(messages) - 1))
    worker.wait(timeout=30)


def test_sigterm_ends_a_stream_that_outlives_the_drain_bound_with_an_error(healthy: RunningServer) -> None:
    worker = healthy.workers[0]
    stream = RunningStream(healthy)  # never sends done: it would run until the idle limit
    stream.first_audio()
    worker.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    while True:
        message = stream.next_message(timeout=30)
        if message.get("error") or message.get("is_end"):
            break
    assert message.get("error") is True and "shut down" in message["message"], message
    assert time.monotonic() - stopped_at < 6 + 3
    stream.ws.close()
    worker.wait(timeout=30)


def test_a_stream_no_worker_takes_in_time_is_an_error_and_is_never_spoken_late(healthy: RunningServer,
                                                                              fault_redis: RedisServer) -> None:
    """Only a clone worker runs: the stream waits in its queue, the client gets an error after
    TTS_JOB_START_TIMEOUT (5 s here), and a stream worker that starts later drops the stale job."""
    client = redis.Redis.from_url(fault_redis.url)
    queue = redis_keys.stream_queue("synthesis")
    healthy.kill_workers()
    try:
        healthy.start_worker(queues="clone")
        healthy.wait_for_workers(1)
        stream = RunningStream(healthy)
        deadline = time.monotonic() + 5
        while client.llen(queue) == 0:  # a clone worker does not take streams
            assert time.monotonic() < deadline, "the stream never reached its queue"
            time.sleep(0.05)
        message = stream.next_message(timeout=15)
        assert message.get("error") is True and "no synthesis worker took" in message["message"], message
        assert client.llen(queue) == 1
        stream.ws.close()

        healthy.start_worker()  # serves synthesis: finds the stale job first, and drops it
        healthy.wait_for_workers(2)
        deadline = time.monotonic() + 15
        while client.llen(queue):
            assert time.monotonic() < deadline, "the stale job was never taken off its queue"
            time.sleep(0.05)
        time.sleep(1.5)  # a job that had started would be listed by the next heartbeat
        assert client.zcard(redis_keys.ACTIVE_JOBS) == 0
        _complete(stream_tts(healthy.ws, PARAMS, ["好的。"]))
    finally:
        healthy.kill_workers()
