"""GET /metrics and request ids, end to end: real streams and clones move the metrics of
the web process that served them, in both modes; X-Request-ID is echoed and logged."""
from __future__ import annotations

import base64
import json
import re
import time
import uuid

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import decode_audio, stream_tts
from tests.server import RunningServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: RunningServer) -> Samples:
    response = httpx.get(f"{server.http}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return get(after, name, **labels) - get(before, name, **labels)


def settled(server: RunningServer, timeout: float = 10.0) -> Samples:
    """A scrape once this process has no stream running (it meters a request just after its is_end)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(server)
        if get(samples, "tts_active_streams") == 0 or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_a_stream_moves_the_stream_metrics(server: RunningServer, voice: str) -> None:
    pieces = ["今天天气很好，", "我们一起去公园散步吧。", "The quick brown fox jumps over the lazy dog."]
    before = settled(server)
    # All text and done at once: done arrives before the first audio, so both TTFA variants count.
    result = stream_tts(server.ws, {"prompt_id": voice, "audio_format": "pcm", "sample_rate": 24000}, pieces)
    assert not result.errors and result.end is not None
    after = settled(server)

    assert get(after, "tts_active_streams") == 0
    assert moved(before, after, "tts_streams_started_total") == 1
    assert moved(before, after, "tts_streams_ended_total", outcome="completed") == 1
    assert moved(before, after, "tts_time_to_first_audio_seconds_count", since="first_text") == 1
    assert moved(before, after, "tts_time_to_first_audio_seconds_count", since="done") == 1
    ttfa = moved(before, after, "tts_time_to_first_audio_seconds_sum", since="first_text")
    assert 0 < ttfa < result.arrival[0] + 0.5  # the server's clock starts after the client's
    chunks = len(result.audio)
    assert chunks >= 2
    assert moved(before, after, "tts_audio_chunk_gap_seconds_count") == chunks - 1
    assert moved(before, after, "tts_stream_rtf_count") == 1
    assert moved(before, after, "tts_stream_rtf_sum") > 0
    assert moved(before, after, "tts_characters_received_total") == sum(len(p) for p in pieces)
    audio, rate = decode_audio(b"".join(result.chunks()), "pcm", 24000)
    assert np.isclose(moved(before, after, "tts_audio_seconds_sent_total"), len(audio) / rate, rtol=0.02, atol=0.05)


def test_active_streams_while_running_and_after_a_hang_up(server: RunningServer, voice: str) -> None:
    before = settled(server)
    with connect(server.ws, open_timeout=10) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": voice, "audio_format": "pcm"}}))
        # A whole sentence: spoken without waiting for done.
        ws.send(json.dumps({"text": "今天天气很好，我们一起去公园散步吧。", "done": False}, ensure_ascii=False))
        ws.recv(timeout=60)  # the first audio: the request is surely running
        assert get(scrape(server), "tts_active_streams") == 1
    # The client left without done: the request ends as "disconnected" and frees its slot.
    after = settled(server)
    assert get(after, "tts_active_streams") == 0
    assert moved(before, after, "tts_streams_ended_total", outcome="disconnected") == 1
    assert moved(before, after, "tts_stream_rtf_count") == 0  # only completed requests have an RTF


def test_clones_move_the_clone_metrics(server: RunningServer, prompt_wavs: dict[str, bytes]) -> None:
    body = {"prompt_audio": base64.b64encode(prompt_wavs["jm_kumo"]).decode(), "prompt_text": PROMPT_TEXTS["jm_kumo"],
            "prompt_id": "metrics-clone"}
    before = scrape(server)
    assert httpx.post(f"{server.http}/clone", json=body, timeout=120).json()["existed"] is False
    assert httpx.post(f"{server.http}/clone", json=body, timeout=120).json()["existed"] is True
    garbage = {**body, "prompt_id": "metrics-garbage",
               "prompt_audio": base64.b64encode(b"RIFF" + b"\x00" * 40).decode()}
    assert httpx.post(f"{server.http}/clone", json=garbage, timeout=120).status_code == 400
    after = scrape(server)
    assert moved(before, after, "tts_clones_total", outcome="created") == 1
    assert moved(before, after, "tts_clones_total", outcome="existed") == 1
    assert moved(before, after, "tts_clones_total", outcome="rejected") == 1
    assert moved(before, after, "tts_clone_duration_seconds_count") == 1
    assert 0 < moved(before, after, "tts_clone_duration_seconds_sum") < 120


def test_errors_are_counted_at_both_boundaries(server: RunningServer) -> None:
    before = scrape(server)
    with connect(server.ws, open_timeout=10) as ws:
        ws.send("not json")
        assert json.loads(ws.recv(timeout=30))["error"] is True
    with connect(server.ws, open_timeout=10) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": "no-such-voice"}}))
        assert json.loads(ws.recv(timeout=30))["error"] is True
    assert httpx.post(f"{server.http}/remove", content=b"{oops").status_code == 400
    assert httpx.get(f"{server.http}/clone").status_code == 405
    after = scrape(server)
    assert moved(before, after, "tts_errors_total", source="ws", type="ProtocolError", status="400") == 1
    assert moved(before, after, "tts_errors_total", source="ws", type="VoiceNotFound", status="404") == 1
    assert moved(before, after, "tts_errors_total", source="http", type="InvalidRequest", status="400") == 1
    assert moved(before, after, "tts_errors_total", source="http", type="MethodNotAllowed", status="405") == 1


def test_gauges_of_each_mode(server: RunningServer, voice: str) -> None:
    samples = scrape(server)
    assert ("tts_pool_queue_depth", frozenset({("pool", "clone")})) in samples  # the voice's clone ran here
    assert get(samples, "tts_engine_load_seconds", stat="min") > 0
    assert get(samples, "tts_engine_load_seconds", stat="max") >= get(samples, "tts_engine_load_seconds", stat="min")
    assert get(samples, "process_resident_memory_bytes") > 0
    if server.mode == "distributed":
        assert get(samples, "tts_redis_up") == 1
        assert get(samples, "tts_live_workers") == 2
        assert ("tts_queue_depth", frozenset({("queue", "synthesis")})) in samples
        assert ("tts_queue_depth", frozenset({("queue", "clone")})) in samples
    else:
        assert ("tts_live_workers", frozenset()) not in samples


def test_request_ids_are_echoed_made_and_logged(server: RunningServer) -> None:
    rid = f"e2e-{uuid.uuid4().hex[:12]}"
    response = httpx.post(f"{server.http}/remove", json={"prompt_id": "no-such-voice"}, headers={"X-Request-ID": rid})
    assert response.status_code == 404 and response.headers["x-request-id"] == rid
    made = httpx.get(f"{server.http}/speakers").headers["x-request-id"]
    assert uuid.UUID(made)
    replaced = httpx.get(f"{server.http}/speakers", headers={"X-Request-ID": "has spaces & quotes\""})
    assert uuid.UUID(replaced.headers["x-request-id"])
    # Django's own "Not Found: /remove" line, written after the view, carries the id.
    deadline = time.monotonic() + 5
    while f"[rid={rid}]" not in server.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.1)


def test_a_stream_request_id_reaches_the_worker_logs(server: RunningServer, voice: str) -> None:
    result = stream_tts(server.ws, {"prompt_id": voice, "audio_format": "pcm"}, ["好的。"])
    assert not result.errors and result.end is not None
    if server.mode != "distributed":
        return  # embedded jobs log nothing on success; their threads get the id all the same (run_job)
    rid = result.end["id"]
    pattern = re.compile(rf"job {re.escape(rid)}: .* \[rid={re.escape(rid)}\]")
    deadline = time.monotonic() + 10
    while not any(pattern.search(p.read_text(errors="replace")) for p in server.data_dir.glob("worker*.log")):
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.1)
