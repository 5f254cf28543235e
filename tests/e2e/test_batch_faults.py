"""Batch jobs under faults in distributed mode: a worker killed (SIGKILL) in the middle of an
item, and a Redis restart (every queued task lost) in the middle of a job. The job still
succeeds, each item's file exists once and decodes, and usage counts each item once.

Its own stack (private Redis, fresh database, two workers that both take batch items), with a
short lease and sweep period so a dead run's item is taken over in seconds.
"""
from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import decode_audio, s3_keys
from tests.e2e.test_batches import TERMINAL, put, wait_for
from tests.e2e.test_tenants import clone
from tests.s3server import S3Server
from tests.server import RunningServer, start_server
from tests.services import RedisServer, create_database, private_redis

BUCKET = "tts-batch-faults"
ITEM_TEXT = "Item {i}. The river rose slowly through the night, and by morning the old bridge was closed to traffic."

batch_redis = private_redis("batch-fault-redis")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, batch_redis: RedisServer,
          prompt_wavs: dict[str, bytes]) -> Iterator[RunningServer]:
    database = create_database()
    s3_server.create_bucket(BUCKET)
    env = {**s3_server.env(), "TTS_REDIS_URL": batch_redis.url, "TTS_DATABASE_URL": database.url,
           "TTS_FEATURE_STORE": f"s3://{BUCKET}/features", "TTS_BATCH_LEASE_SECONDS": "8",
           "TTS_BATCH_SWEEP_SECONDS": "2"}
    server = start_server(tmp_path_factory.mktemp("batch-faults"), mode="distributed", extra_env=env, workers=2)
    try:
        assert clone(server, None, "reader", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"]).status_code == 200
        yield server
    finally:
        server.stop()
        database.drop()


@pytest.fixture
def healthy(stack: RunningServer) -> RunningServer:
    """Two live workers (a test before may have killed one)."""
    alive = [w for w in stack.workers if w.poll() is None]
    if len(alive) < 2:
        stack.workers[:] = alive
        while len(stack.workers) < 2:
            stack.start_worker()
    stack.wait_for_workers(2)
    return stack


def outputs(stack: RunningServer) -> list[str]:
    return s3_keys(stack.env, BUCKET, "features/", ".wav")


def characters_used(stack: RunningServer) -> int:
    return httpx.get(f"{stack.http}/usage", timeout=30).json()["total"]["characters"]


def check_whole_once(stack: RunningServer, final: dict, files_before: list[str], used_before: int,
                     killed_runs: int = 0) -> None:
    assert final["state"] == "succeeded", final
    written = [key for key in outputs(stack) if key not in files_before]
    # one file per item; a run SIGKILLed between writing its file and recording it leaves one
    # more, which no item names (the hourly sweep of blobs nothing points at deletes it)
    assert final["counts"]["total"] <= len(written) <= final["counts"]["total"] + killed_runs, written
    for item in final["items"]:
        data = httpx.get(f"{stack.http}{item['url']}", timeout=30).content
        audio, rate = decode_audio(data, "wav", 24000)
        assert abs(len(audio) / rate - item["seconds"]) < 0.05, item
    assert characters_used(stack) - used_before == final["characters"]  # each item counted once


def test_an_item_whose_worker_is_killed_is_finished_by_another(healthy: RunningServer) -> None:
    files, used = outputs(healthy), characters_used(healthy)
    inputs = [{"text": ITEM_TEXT.format(i=i)} for i in range(6)]
    assert put(healthy, "killed-worker", {"prompt_id": "reader", "inputs": inputs}).status_code == 201
    wait_for(healthy, "killed-worker", lambda j: j["counts"]["running"] == 2)  # each worker runs one
    healthy.workers[0].send_signal(signal.SIGKILL)
    healthy.workers[0].wait(timeout=10)
    final = wait_for(healthy, "killed-worker", lambda j: j["state"] in TERMINAL, timeout=400)
    check_whole_once(healthy, final, files, used, killed_runs=1)
    log = "\n".join(p.read_text(errors="replace") for p in healthy.data_dir.glob("worker*.log"))
    assert "queueing 1 batch items again" in log or "queueing 2 batch items again" in log, log[-3000:]


def test_a_redis_restart_mid_job_loses_no_item(healthy: RunningServer, batch_redis: RedisServer) -> None:
    files, used = outputs(healthy), characters_used(healthy)
    inputs = [{"text": ITEM_TEXT.format(i=i)} for i in range(6)]
    assert put(healthy, "redis-restart", {"prompt_id": "reader", "inputs": inputs}).status_code == 201
    wait_for(healthy, "redis-restart", lambda j: j["counts"]["succeeded"] >= 1 and j["counts"]["running"] >= 1)
    batch_redis.restart()  # the queued tasks are gone with it
    restarted = time.monotonic()
    final = wait_for(healthy, "redis-restart", lambda j: j["state"] in TERMINAL, timeout=400)
    check_whole_once(healthy, final, files, used)
    assert time.monotonic() - restarted < 400
