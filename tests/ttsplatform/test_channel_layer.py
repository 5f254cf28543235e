"""The one-round-trip Redis channel layer against a real Redis: same capacity and expiry
as channels-redis, messages readable by either layer, and a Redis without the cached
send script (restarted, or SCRIPT FLUSH) still takes sends."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

from tests.services import RedisServer, start_redis
from ttsplatform.channel_layer import FewerTripsRedisChannelLayer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("layer-redis"))
    yield server
    server.stop()


def _layers(server: RedisServer, **config: object) -> tuple[FewerTripsRedisChannelLayer, RedisChannelLayer]:
    prefix = f"layertest{time.monotonic_ns()}"
    hosts = [{"address": server.url, "socket_timeout": None}]
    return (FewerTripsRedisChannelLayer(hosts=hosts, prefix=prefix, **config),
            RedisChannelLayer(hosts=hosts, prefix=prefix, **config))


async def _close(*layers: RedisChannelLayer) -> None:
    for layer in layers:
        await layer.flush()
        await layer.close_pools()


def test_messages_cross_between_the_two_layers_in_order(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ours, theirs = _layers(redis_server)
        try:
            for sender, receiver in ((ours, theirs), (theirs, ours)):
                specific = await receiver.new_channel()  # process-local: "prefix.abc!def"
                for channel in (specific, "plain.channel"):
                    for i in range(3):
                        await sender.send(channel, {"type": "tts.chunk", "index": i})
                    got = [await asyncio.wait_for(receiver.receive(channel), 5) for _ in range(3)]
                    assert [m["index"] for m in got] == [0, 1, 2]
                    assert all(m["type"] == "tts.chunk" for m in got)
        finally:
            await _close(ours, theirs)

    asyncio.run(scenario())


def test_a_full_channel_refuses_like_channels_redis(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ours, theirs = _layers(redis_server, capacity=3)
        try:
            for layer in (ours, theirs):
                channel = await layer.new_channel()
                for i in range(3):
                    await layer.send(channel, {"type": "x", "i": i})
                with pytest.raises(ChannelFull):
                    await layer.send(channel, {"type": "x", "i": 3})
                assert (await layer.receive(channel))["i"] == 0
                await layer.send(channel, {"type": "x", "i": 4})  # room again after a receive
        finally:
            await _close(ours, theirs)

    asyncio.run(scenario())


def test_expired_messages_are_dropped_and_the_key_expires(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ours, theirs = _layers(redis_server, capacity=2, expiry=1)
        try:
            await ours.send("expiring.channel", {"type": "x", "i": 0})
            await ours.send("expiring.channel", {"type": "x", "i": 1})
            key = f"{ours.prefix}expiring.channel"
            assert 0 < redis.Redis.from_url(redis_server.url).ttl(key) <= 1
            await asyncio.sleep(2.1)
            # Full of expired messages: they are dropped, so this one fits.
            await ours.send("expiring.channel", {"type": "x", "i": 2})
            assert (await asyncio.wait_for(theirs.receive("expiring.channel"), 5))["i"] == 2
        finally:
            await _close(ours, theirs)

    asyncio.run(scenario())


def test_sends_survive_a_flushed_script_cache(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ours, _ = _layers(redis_server)
        try:
            channel = await ours.new_channel()
            await ours.send(channel, {"type": "x", "i": 0})
            redis.Redis.from_url(redis_server.url).script_flush()
            await ours.send(channel, {"type": "x", "i": 1})
            assert [(await ours.receive(channel))["i"] for _ in range(2)] == [0, 1]
        finally:
            await _close(ours)

    asyncio.run(scenario())
