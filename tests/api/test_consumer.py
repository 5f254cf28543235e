"""The /tts consumer in process (Channels' WebsocketCommunicator, the in-memory layer, the
replay engine): what it does with the events of its job. A chunk delivered twice goes to
the client once, an event of an ended request is ignored, a gap or a miscounted end is an
error frame and close 4500, never audio with a hole in it."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from api.consumers import TtsConsumer
from synthesis.engines import registry
from synthesis.engines.replay import ReplayEngine
from tests.e2e.support import wav_bytes
from voices import services
from voices.feature_store import get_feature_store
from voices.tenancy import default_tenant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.anyio]
VOICE = "consumer-unit"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Channels runs on asyncio


class RecordingTtsConsumer(TtsConsumer):
    """The real consumer; the test keeps a handle on each instance to address its channel."""

    instances: list[RecordingTtsConsumer] = []

    async def connect(self) -> None:
        RecordingTtsConsumer.instances.append(self)
        await super().connect()


@pytest.fixture
def voice(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    settings.TTS_FEATURE_STORE = str(tmp_path)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    get_feature_store.cache_clear()
    engine = ReplayEngine()
    engine.load()
    monkeypatch.setattr(registry, "_engine", engine)  # the process's engine: replay, warm
    samples = (0.3 * np.sin(np.linspace(0, 3000, 48000))).astype(np.float32)
    features = engine.extract_features(samples, 16000, "hello there")
    tenant = default_tenant()
    blobs = services.store_blobs(tenant, features.to_bytes(), wav_bytes(samples, 16000))
    services.insert_voice(tenant, VOICE, {"prompt_text": "hello there", "engine": engine.name,
                                          "feature_version": engine.feature_version, "prompt_sample_rate": 16000},
                          blobs)
    RecordingTtsConsumer.instances.clear()
    yield VOICE
    get_feature_store.cache_clear()


async def _open_request(voice: str) -> tuple[WebsocketCommunicator, RecordingTtsConsumer]:
    """A connection with a request whose text has not come yet: its job speaks nothing until
    the test says so, and every event the consumer sees is the test's."""
    communicator = WebsocketCommunicator(RecordingTtsConsumer.as_asgi(), "/tts")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_to(text_data=json.dumps({"req_params": {"prompt_id": voice, "audio_format": "pcm"}}))
    consumer = RecordingTtsConsumer.instances[-1]
    for _ in range(200):
        if consumer.job is not None:
            break
        await communicator.receive_nothing(0.01)
    assert consumer.job is not None, "the request did not start"
    return communicator, consumer


async def _event(consumer: RecordingTtsConsumer, kind: str, job: str | None = None, **fields: Any) -> None:
    assert consumer.job is not None
    await get_channel_layer().send(consumer.channel_name, {"type": kind, "job": job or consumer.job.job_id, **fields})


def _chunk(index: int) -> dict[str, Any]:
    return {"index": index, "data": "AAAA", "seconds": 0.1 * (index + 1)}


async def test_a_redelivered_chunk_reaches_the_client_once(voice: str) -> None:
    communicator, consumer = await _open_request(voice)
    for index in (0, 0, 1, 0, 1):
        await _event(consumer, "tts.chunk", **_chunk(index))
    await _event(consumer, "tts.end", count=2)
    frames = [json.loads(await communicator.receive_from(5)) for _ in range(3)]
    assert [f["index"] for f in frames] == [0, 1, 2]
    assert [f["is_end"] for f in frames] == [False, False, True] and not any(f["error"] for f in frames)
    assert await communicator.receive_nothing(0.2)
    await communicator.disconnect()


async def test_events_of_another_job_are_ignored(voice: str) -> None:
    communicator, consumer = await _open_request(voice)
    await _event(consumer, "tts.chunk", job="an-ended-request", **_chunk(0))
    await _event(consumer, "tts.error", job="an-ended-request", message="not yours")
    await _event(consumer, "tts.end", job="an-ended-request", count=7)
    assert await communicator.receive_nothing(0.3)
    await _event(consumer, "tts.chunk", **_chunk(0))
    assert json.loads(await communicator.receive_from(5))["index"] == 0
    await communicator.disconnect()


@pytest.mark.parametrize("events", [
    [("tts.chunk", _chunk(0)), ("tts.chunk", _chunk(2))],  # chunk 1 never came
    [("tts.chunk", _chunk(0)), ("tts.end", {"count": 2})],  # the end counts a chunk never sent
    [("tts.chunk", _chunk(0)), ("tts.chunk", _chunk(1)), ("tts.end", {"count": 1})],
], ids=["gap", "end counts more", "end counts fewer"])
async def test_a_gap_or_a_miscounted_end_is_an_error_and_4500(voice: str, events: list[tuple[str, dict]]) -> None:
    communicator, consumer = await _open_request(voice)
    for kind, fields in events:
        await _event(consumer, kind, **fields)
    frames = []
    while True:
        output = await communicator.receive_output(5)
        if output["type"] == "websocket.close":
            break
        frames.append(json.loads(output["text"]))
    assert output["code"] == 4500
    assert frames[-1]["error"] is True and ("lost" in frames[-1]["message"] or "missing" in frames[-1]["message"])
    assert all(not f["error"] for f in frames[:-1]) and not any(f.get("is_end") for f in frames)
    await communicator.wait()


async def test_a_job_error_ends_the_request_with_its_message(voice: str) -> None:
    communicator, consumer = await _open_request(voice)
    await _event(consumer, "tts.chunk", **_chunk(0))
    await _event(consumer, "tts.error", message="the engine fell over")
    assert json.loads(await communicator.receive_from(5))["index"] == 0
    reply = json.loads(await communicator.receive_from(5))
    assert reply == {"error": True, "message": "the engine fell over"}
    assert (await communicator.receive_output(5))["code"] == 4500
    await communicator.wait()
