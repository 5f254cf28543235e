"""The Redis channel layer of distributed mode, with fewer round trips per message.

channels-redis spends four round trips on every send (drop expired messages, count,
add, set the expiry) and, on the receiving side, runs its clean-up script and the
blocking pop as two. Every audio chunk and heartbeat pays them, and at 16 streams a
worker's event loop spent about half its time in them. Here a send is one Lua script
doing the same four steps atomically (so the capacity check can no longer race with
another sender), and the receiver sends its clean-up and its blocking pop together.
Message format, keys, capacity and expiry are channels-redis's own, so the two layers
interoperate.

One leak of channels-redis is closed here: the process's shared reader buffers messages
for each process-local channel, and a buffer is only dropped by its own consumer's
receive. A /tts consumer whose client hung up is gone, but its job's last chunks and
heartbeats still arrive, and their buffer stayed for ever (one per hung-up stream). Here
a buffer that no receive is waiting on and that nobody has read for ``expiry`` seconds
(the messages' own lifetime in Redis) is dropped when the next buffer is made.

And one loss: that shared reader is whichever consumer's receive got there first, and
channels cancels a consumer's receive when the consumer ends (every client that hangs up
or closes after ``is_end``). A read cancelled after Redis popped a message, which may be
another consumer's, lost it: in a distributed soak about 2% of the streams failed with
"audio stream ended with chunks missing" or "the synthesis worker stopped responding".
Here the read of the process channel is not cancelled with its consumer: the ending
receive waits for it (at most one blocking pop, 2 s) and puts what it read into
the buffer of the consumer it is for.
"""
from __future__ import annotations

import asyncio
import contextvars
import hashlib
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels_redis.core import BoundedQueue, RedisChannelLayer
from redis.exceptions import NoScriptError

#: KEYS[1] channel key; ARGV: drop scores up to, capacity, score, message, expiry (s).
_SEND_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
_SEND_SHA = hashlib.sha1(_SEND_SCRIPT.encode()).hexdigest()

#: channels-redis's clean-up, verbatim in effect: put back what a cancelled receive had popped.
_RESTORE_SCRIPT = """
local backed_up = redis.call('ZRANGE', ARGV[2], 0, -1, 'WITHSCORES')
for i = #backed_up, 1, -2 do
    redis.call('ZADD', ARGV[1], backed_up[i], backed_up[i - 1])
end
redis.call('DEL', ARGV[2])
"""


class _ReadAbandoned(Exception):
    """Ends a read of the process channel whose consumer has gone, between two blocking pops."""


#: set inside a read of the process channel: True once its consumer has gone
_read_abandoned: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("read_abandoned")

#: the clean-up of abandoned receive buffers runs at most this often (seconds)
SWEEP_INTERVAL_S = 1.0


class _LocalBuffer(BoundedQueue):
    """channels-redis's per-channel receive buffer (the oldest message is dropped when full),
    remembering when it was last read and whether a receive is waiting on it."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.read_at = time.monotonic()
        self.waiting = 0

    async def get(self) -> Any:
        self.waiting += 1
        try:
            return await super().get()
        finally:
            self.waiting -= 1

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        self.read_at = time.monotonic()
        return item

    def put_nowait(self, item: Any) -> None:
        read_at = self.read_at  # dropping the oldest of a full buffer is no read
        super().put_nowait(item)
        self.read_at = read_at


class _LocalBuffers(dict[str, _LocalBuffer]):
    """The layer's ``receive_buffer`` (a defaultdict in channels-redis), without the buffers
    of consumers that are gone: each new buffer first drops the ones nobody waits on and
    nobody has read for ``expiry`` seconds."""

    def __init__(self, capacity: int, expiry: float) -> None:
        super().__init__()
        self.capacity = capacity
        self.expiry = expiry
        self._swept_at = time.monotonic()

    def __missing__(self, channel: str) -> _LocalBuffer:
        self.sweep()
        buffer = self[channel] = _LocalBuffer(self.capacity)
        return buffer

    def sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < SWEEP_INTERVAL_S:
            return
        self._swept_at = now
        for channel, buffer in list(self.items()):
            if not buffer.waiting and now - buffer.read_at > self.expiry:
                del self[channel]


class FewerTripsRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receive_buffer = _LocalBuffers(self.capacity, self.expiry)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        assert "__asgi_channel__" not in message
        non_local = channel
        if "!" in channel:
            message = {**message, "__asgi_channel__": channel}
            non_local = self.non_local_name(channel)
            index = self.consistent_hash(channel)
        else:
            index = next(self._send_index_generator)
        connection = self.connection(index)
        args = (int(time.time()) - int(self.expiry), self.get_capacity(channel), time.time(),
                self.serialize(message), int(self.expiry))
        key = self.prefix + non_local
        try:
            added = await connection.evalsha(_SEND_SHA, 1, key, *args)
        except NoScriptError:  # first send since Redis started: EVAL also caches the script
            added = await connection.eval(_SEND_SCRIPT, 1, key, *args)
        if not added:
            raise ChannelFull()

    #: seconds of one blocking pop: how long an ending consumer may wait for its read (below)
    brpop_timeout = 2

    async def receive_single(self, channel: str) -> tuple[Any, dict[str, Any]]:
        if "!" not in channel:  # a plain channel: its reader gets all its messages
            return await super().receive_single(channel)
        abandoned = [False]
        token = _read_abandoned.set(abandoned)
        read = asyncio.ensure_future(super().receive_single(channel))  # the task copies the flag
        _read_abandoned.reset(token)
        try:
            return await asyncio.shield(read)
        except asyncio.CancelledError:
            # The reading consumer ended. Redis may have popped a message for another consumer
            # of this process already: let the blocking pop finish (a message, or its timeout)
            # while this receive still holds the process's receive lock, and put what it read
            # where its consumer's receive finds it, as channels-redis does.
            abandoned[0] = True
            await asyncio.wait({read})
            if not read.cancelled() and read.exception() is None:
                channels, message = read.result()
                for target in channels if isinstance(channels, list) else [channels]:
                    self.receive_buffer[target].put_nowait(message)
            raise

    async def _brpop_with_clean(self, index: int, channel: str, timeout: int) -> bytes | None:
        if _read_abandoned.get([False])[0]:
            raise _ReadAbandoned()
        backup_queue = self._backup_channel_name(channel)
        connection = self.connection(index)
        async with connection.pipeline(transaction=False) as pipe:
            pipe.eval(_RESTORE_SCRIPT, 0, channel, backup_queue)
            pipe.bzpopmin(channel, timeout=timeout)
            _, result = await pipe.execute()
        if result is None:
            return None
        _, member, timestamp = result
        await connection.zadd(backup_queue, {member: float(timestamp)})
        return member
