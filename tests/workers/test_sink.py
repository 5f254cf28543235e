"""The job sink against real channel layers (in-memory and Redis) with a tiny capacity:
a slow consumer gets every chunk, in order, and a cancelled job stops waiting."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from tests.services import RedisServer, start_redis
from ttsplatform.channel_layer import FewerTripsRedisChannelLayer
from workers.sink import ChannelLayerSink

CAPACITY = 5
CHUNKS = 60


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("sink-redis"))
    yield server
    server.stop()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture(params=["in-memory", "redis", "redis-fewer-trips"])
def layer(request: pytest.FixtureRequest):
    if request.param == "in-memory":
        return InMemoryChannelLayer(capacity=CAPACITY)
    server = request.getfixturevalue("redis_server")
    cls = FewerTripsRedisChannelLayer if request.param == "redis-fewer-trips" else RedisChannelLayer
    return cls(hosts=[{"address": server.url, "socket_timeout": None}], capacity=CAPACITY,
               prefix=f"sinktest{time.monotonic_ns()}")


def _on(loop: asyncio.AbstractEventLoop, coro):
    return asyncio.run_coroutine_threadsafe(coro, loop).result(10)


def test_a_slow_consumer_gets_every_chunk_in_order(layer, loop: asyncio.AbstractEventLoop) -> None:
    channel = _on(loop, layer.new_channel())
    sink = ChannelLayerSink(layer, channel, loop, "job-1", threading.Event())

    def produce() -> None:
        for i in range(CHUNKS):
            sink.chunk(i, f"chunk-{i}")
        sink.end(CHUNKS)

    producer = threading.Thread(target=produce)
    producer.start()
    received = []
    while True:
        event = _on(loop, layer.receive(channel))
        received.append(event)
        if event["type"] == "tts.end":
            break
        time.sleep(0.005)  # slower than the producer: the channel fills and the sink must wait
    producer.join(10)
    chunks = [e for e in received if e["type"] == "tts.chunk"]
    assert [e["index"] for e in chunks] == list(range(CHUNKS))
    assert [e["data"] for e in chunks] == [f"chunk-{i}" for i in range(CHUNKS)]
    assert received[-1]["count"] == CHUNKS
    assert {e["job"] for e in received} == {"job-1"}


def test_a_cancelled_job_stops_waiting_for_a_full_channel(layer, loop: asyncio.AbstractEventLoop) -> None:
    channel = _on(loop, layer.new_channel())
    cancelled = threading.Event()
    sink = ChannelLayerSink(layer, channel, loop, "job-2", cancelled)
    for i in range(CAPACITY):
        sink.chunk(i, "x")
    cancelled.set()
    started = time.monotonic()
    with pytest.raises(ChannelFull):
        sink.chunk(CAPACITY, "x")
    assert time.monotonic() - started < 1.0
