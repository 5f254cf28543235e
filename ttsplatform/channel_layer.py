"""The Redis channel layer of distributed mode, with fewer round trips per message.

channels-redis spends four round trips on every send (drop expired messages, count,
add, set the expiry) and, on the receiving side, runs its clean-up script and the
blocking pop as two. Every audio chunk and heartbeat pays them, and at 16 streams a
worker's event loop spent about half its time in them. Here a send is one Lua script
doing the same four steps atomically (so the capacity check can no longer race with
another sender), and the receiver sends its clean-up and its blocking pop together.
Message format, keys, capacity and expiry are channels-redis's own, so the two layers
interoperate.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer
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


class FewerTripsRedisChannelLayer(RedisChannelLayer):
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

    async def _brpop_with_clean(self, index: int, channel: str, timeout: int) -> bytes | None:
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
