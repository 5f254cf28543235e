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

from tests.services import private_redis
from ttsplatform.channel_layer import FewerTripsRedisChannelLayer
from workers.sink import ChannelLayerSink

CAPACITY = 5
CHUNKS = 60


redis_server = private_redis("sink-redis")


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
    with pytest.raises(ChannelFull):  # on this call or, sends being pipelined, at the latest at the end
        sink.chunk(CAPACITY, "x")
        sink.end(CAPACITY + 1)
    assert time.monotonic() - started < 1.0


def test_nothing_after_an_undelivered_event_is_sent(layer, loop: asyncio.AbstractEventLoop) -> None:
    """The consumer must see a job's chunks without a gap: once one is not delivered, the
    chunks already handed over behind it are dropped too, and every later call fails."""
    channel = _on(loop, layer.new_channel())
    cancelled = threading.Event()
    sink = ChannelLayerSink(layer, channel, loop, "job-3", cancelled)
    for i in range(CAPACITY):
        sink.chunk(i, "x")
    cancelled.set()  # the channel is full and nobody waits for room any more
    failures = 0
    for i in range(CAPACITY, CAPACITY + 3):
        try:
            sink.chunk(i, "x")
        except ChannelFull:
            failures += 1
    with pytest.raises(ChannelFull):
        sink.end(CAPACITY + 3)
    received = [_on(loop, layer.receive(channel)) for _ in range(CAPACITY)]  # room again
    assert [e["index"] for e in received] == list(range(CAPACITY))
    with pytest.raises(asyncio.TimeoutError):
        _on(loop, asyncio.wait_for(layer.receive(channel), 0.5))


def test_sends_do_not_hold_up_the_job_thread(layer, loop: asyncio.AbstractEventLoop) -> None:
    """A slow channel layer delays delivery, not the thread speaking the next clause."""
    channel = _on(loop, layer.new_channel())
    sink = ChannelLayerSink(SlowLayer(layer, delay_s=0.1), channel, loop, "job-4", threading.Event())
    started = time.monotonic()
    for i in range(3):
        sink.chunk(i, "x")
    handed_over = time.monotonic() - started
    sink.end(3)
    delivered = time.monotonic() - started
    assert handed_over < 0.1 and delivered >= 0.4
    events = [_on(loop, layer.receive(channel)) for _ in range(4)]
    assert [e.get("index", e.get("count")) for e in events] == [0, 1, 2, 3]


class SlowLayer:
    """A channel layer whose sends take ``delay_s`` longer (a distant Redis); sends only."""

    def __init__(self, layer, delay_s: float) -> None:
        self.layer = layer
        self.delay_s = delay_s

    async def send(self, channel: str, event: dict) -> None:
        await asyncio.sleep(self.delay_s)
        await self.layer.send(channel, event)
