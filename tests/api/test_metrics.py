"""The metric hooks and the /metrics endpoint, in-process (the end-to-end test scrapes real servers)."""
from __future__ import annotations

import asyncio
import time

import pytest
from django.test import AsyncClient

from api import metrics
from api.errors import ProtocolError
from workers.errors import ServerBusy


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_stream_feeds_the_histograms_and_counters() -> None:
    before = {
        "started": value("tts_streams_started_total"),
        "completed": value("tts_streams_ended_total", outcome="completed"),
        "ttfa_text": value("tts_time_to_first_audio_seconds_count", since="first_text"),
        "ttfa_done": value("tts_time_to_first_audio_seconds_count", since="done"),
        "gaps": value("tts_audio_chunk_gap_seconds_count"),
        "rtf": value("tts_stream_rtf_count"),
        "chars": value("tts_characters_received_total"),
        "audio": value("tts_audio_seconds_sent_total"),
        "active": value("tts_active_streams"),
    }
    stream = metrics.stream_started()
    assert value("tts_active_streams") == before["active"] + 1
    stream.text(0, False)  # an empty piece does not start the clock
    assert stream.first_text is None
    stream.text(5, False)
    stream.text(3, True)
    time.sleep(0.01)
    stream.chunk(0.5)
    stream.chunk(1.25)
    stream.chunk(2.0)
    stream.end("completed")
    stream.end("completed")  # counted once

    assert value("tts_streams_started_total") == before["started"] + 1
    assert value("tts_streams_ended_total", outcome="completed") == before["completed"] + 1
    assert value("tts_active_streams") == before["active"]
    assert value("tts_time_to_first_audio_seconds_count", since="first_text") == before["ttfa_text"] + 1
    assert value("tts_time_to_first_audio_seconds_count", since="done") == before["ttfa_done"] + 1
    assert value("tts_audio_chunk_gap_seconds_count") == before["gaps"] + 2
    assert value("tts_stream_rtf_count") == before["rtf"] + 1
    assert value("tts_characters_received_total") == before["chars"] + 8
    assert value("tts_audio_seconds_sent_total") == pytest.approx(before["audio"] + 2.0)


def test_done_after_the_first_audio_is_not_a_done_ttfa() -> None:
    done_before = value("tts_time_to_first_audio_seconds_count", since="done")
    rtf_before = value("tts_stream_rtf_count")
    stream = metrics.stream_started()
    stream.text(4, False)
    stream.chunk(0.3)
    stream.text(0, True)
    stream.end("disconnected")
    assert value("tts_time_to_first_audio_seconds_count", since="done") == done_before
    assert value("tts_stream_rtf_count") == rtf_before  # only completed requests have an RTF


def test_errors_are_counted_by_class_and_status() -> None:
    before = value("tts_errors_total", source="ws", type="ProtocolError", status="400")
    metrics.count_error("ws", ProtocolError("bad"))
    assert value("tts_errors_total", source="ws", type="ProtocolError", status="400") == before + 1
    crashes = value("tts_errors_total", source="http", type="Unhandled", status="500")
    metrics.count_error("http", KeyError("x"))
    assert value("tts_errors_total", source="http", type="Unhandled", status="500") == crashes + 1


def test_timed_clone_counts_outcomes() -> None:
    async def answer(existed: bool) -> bool:
        return existed

    async def busy() -> bool:
        raise ServerBusy("full")

    created = value("tts_clones_total", outcome="created")
    timed = value("tts_clone_duration_seconds_count")
    rejected = value("tts_clones_total", outcome="rejected")
    assert asyncio.run(metrics.timed_clone(answer(False))) is False
    assert asyncio.run(metrics.timed_clone(answer(True))) is True
    with pytest.raises(ServerBusy):
        asyncio.run(metrics.timed_clone(busy()))
    assert value("tts_clones_total", outcome="created") == created + 1
    assert value("tts_clone_duration_seconds_count") == timed + 1
    assert value("tts_clones_total", outcome="rejected") == rejected + 1


def test_pool_stats_count_waiting_and_busy_tasks() -> None:
    from workers.executors import BoundedPool

    async def run() -> None:
        pool = BoundedPool("test", workers=1, max_pending=3)
        gate = asyncio.Event()
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def blocker() -> None:
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(5)

        first = pool.submit(blocker)
        await started.wait()
        second = pool.submit(lambda: None)
        assert (pool.waiting, pool.busy) == (1, 1)
        gate.set()
        await asyncio.gather(first, second)
        assert (pool.waiting, pool.busy) == (0, 0)
        pool.executor.shutdown()

    asyncio.run(run())


def test_metrics_endpoint_answers_prometheus_text(settings) -> None:
    settings.TTS_METRICS_TOKEN = ""
    response = asyncio.run(AsyncClient().get("/metrics"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "# TYPE tts_time_to_first_audio_seconds histogram" in text
    assert "# TYPE tts_active_streams gauge" in text
    assert "_created" not in text


def test_metrics_token(settings) -> None:
    settings.TTS_METRICS_TOKEN = "s3cret"
    client = AsyncClient()
    missing = asyncio.run(client.get("/metrics"))
    assert missing.status_code == 401 and missing.json()["error"] is True
    wrong = asyncio.run(client.get("/metrics", headers={"Authorization": "Bearer nope"}))
    assert wrong.status_code == 401
    right = asyncio.run(client.get("/metrics", headers={"Authorization": "Bearer s3cret"}))
    assert right.status_code == 200 and b"tts_streams_started_total" in right.content


def test_a_scrape_without_redis_answers_quickly(settings) -> None:
    """Distributed mode with Redis unreachable: the scrape still answers, within its timeout."""
    settings.DISTRIBUTED = True
    settings.TTS_REDIS_URL = settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    started = time.monotonic()
    try:
        text = asyncio.run(metrics.render()).decode()
    finally:
        metrics.REDIS_GAUGES.snapshot = None
    assert time.monotonic() - started < metrics.REDIS_SCRAPE_TIMEOUT_S + 1
    assert "tts_redis_up 0.0" in text
    assert "tts_live_workers" not in text and "tts_queue_depth" not in text


def test_embedded_scrapes_have_no_distributed_gauges() -> None:
    text = asyncio.run(metrics.render()).decode()
    assert "tts_redis_up" not in text and "tts_live_workers" not in text
