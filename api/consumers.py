"""WebSocket /tts: one connection, one request at a time (then another, if the client wants).

The consumer authenticates the caller, validates, resolves the voice in the caller's
tenant, holds the tenant's stream lease and counts its characters, starts a job,
relays text in and audio out, checks that chunks arrive numbered without gaps or
duplicates, and meters each request once, however it ends.
"""
from __future__ import annotations

import asyncio
import json
import logging
import queue
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from api import metrics, protocol
from api.errors import IdleTimeout, ProtocolError, VoiceNotFound
from core import logs
from core.errors import ApiError, PayloadTooLarge
from tenants import quotas, usage
from tenants.auth import Caller, caller_for_scope
from tenants.models import Quota, Scope
from voices import services
from voices.errors import UnknownVoice
from workers import backend, events
from workers.dispatch import Job, start_job
from workers.errors import SynthesisFailed
from workers.runner import VoiceRef

log = logging.getLogger(__name__)

LEASE_REFRESH_S = 10.0


class TtsConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.job: Job | None = None
        self.request_id = ""
        self.request: protocol.TtsRequest | None = None
        self.sequence = events.ChunkSequence()
        self.text_chars = 0
        self.text_done = False
        self.closed = False
        self.caller: Caller | None = None
        self.quota = None
        self.metered: dict[str, Any] | None = None  # the running request's usage, until recorded
        self.observed: metrics.StreamMetrics | None = None  # the running request's timings
        self.last_client_message = time.monotonic()
        await self.accept()
        self.watchdog = asyncio.create_task(self._close_when_idle(settings.TTS_WS_IDLE_TIMEOUT))
        try:
            self.caller, self.quota = await database_sync_to_async(self._authorise)()
        except ApiError as exc:
            await self._fail(exc)

    def _authorise(self) -> tuple[Caller, Quota | None]:
        """The caller and its tenant's limits, in one trip to the database thread."""
        caller = self._caller_now()
        return caller, quotas.limits_of(caller.tenant.id)

    def _caller_now(self) -> Caller:
        """Who is calling, checked against the database now (blocking)."""
        caller = caller_for_scope(self.scope)
        caller.require(Scope.SYNTHESIZE)
        return caller

    async def disconnect(self, code: int) -> None:
        self.closed = True
        self._cancel_job()
        self.watchdog.cancel()
        await self._end_request("disconnected")

    async def _close_when_idle(self, limit: float) -> None:
        """A client that goes quiet must not hold a stream slot (and its thread) forever,
        and a job whose worker vanished must become an error, not a hang."""
        while not self.closed:
            idle = time.monotonic() - self.last_client_message
            if idle >= limit:
                if self.job is None or not self.text_done:
                    await self._fail(IdleTimeout(f"no message from the client for {limit:g} s"))
                    return
                idle = 0.0  # the job is speaking everything it was given; wait for it
            if self.job is not None:
                problem = self.job.liveness_problem()
                if problem is not None:
                    await self._fail(SynthesisFailed(problem))
                    return
            await self._refresh_lease()
            # Remote jobs can vanish with their worker: look often (a job may start any time).
            tick = backend.current().liveness_tick_s
            await asyncio.sleep(tick if tick is not None else max(0.5, limit - idle))

    # --- client -> server ------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.last_client_message = time.monotonic()
        try:
            if self.caller is None:
                return  # authentication failed; the connection is closing
            message = protocol.decode_message(text_data)
            if self.job is None:
                if "req_params" not in message:
                    raise ProtocolError("send {\"req_params\": {...}} first")
                await self._start(message)
            else:
                if "req_params" in message:
                    raise ProtocolError("a request is already running on this connection")
                await self._feed(message)
        except ApiError as exc:
            await self._fail(exc)
        except Exception:
            log.exception("unexpected error in /tts")
            await self._fail(SynthesisFailed("internal server error"))

    async def websocket_too_large(self, message: dict[str, Any]) -> None:
        """A message over the server's size limit (ttsplatform/daphne_hooks.py): its data
        was discarded as it arrived; refuse it like any other bad message."""
        self.last_client_message = time.monotonic()
        await self._fail(PayloadTooLarge(f"a message may be at most {message.get('limit')} bytes"))

    async def websocket_invalid_text(self, message: dict[str, Any]) -> None:
        """A text frame that is not UTF-8 (ttsplatform/daphne_hooks.py)."""
        self.last_client_message = time.monotonic()
        await self._fail(ProtocolError("a text message must be UTF-8 encoded JSON"))

    async def _start(self, message: dict[str, Any]) -> None:
        """Start a request; text sent with its req_params goes to the job as it starts."""
        assert self.caller is not None
        request = protocol.parse_req_params(message["req_params"])
        has_text = "text" in message or "done" in message
        text, done = protocol.parse_text_message(message) if has_text else ("", False)
        self._check_length(len(text))
        voice = await self._voice(request.prompt_id)
        request_id = str(uuid.uuid4())
        logs.request_id.set(request_id)  # this request's log lines (the consumer's task, its threads)
        tenant_id = self.caller.tenant.id
        lease = self.quota is not None and self.quota.max_concurrent_streams is not None
        if lease:
            await quotas.counters().acquire_stream(tenant_id, request_id, self.quota.max_concurrent_streams)
        try:
            await quotas.take_characters(tenant_id, self.quota, len(text))
            job = await start_job(request_id, request, voice, self.channel_name, text, done)
        except BaseException:
            if lease:
                await quotas.counters().release_stream(tenant_id, request_id)
            raise
        self.request = request
        self.request_id = request_id
        self.sequence = events.ChunkSequence()
        self.text_chars = len(text)
        self.text_done = done
        self.job = job
        self.metered = {"tenant": tenant_id, "lease": lease, "characters": len(text), "audio_seconds": 0.0,
                        "refreshed": time.monotonic()}
        self.observed = metrics.stream_started()
        if has_text:
            self.observed.text(len(text), done)

    async def _voice(self, prompt_id: str) -> VoiceRef:
        try:
            return await database_sync_to_async(self._get_voice)(prompt_id)
        except UnknownVoice as exc:
            raise VoiceNotFound(exc.message) from None

    def _get_voice(self, prompt_id: str) -> VoiceRef:
        """The voice, in the same trip to the database thread as a fresh check of the key:
        a key revoked (or expired) while the connection is open stops at its next request
        (4401), not when the client hangs up. One indexed query per request, no cache, so
        revocation takes effect at once on every process."""
        assert self.caller is not None
        if self.caller.keyed:
            self.caller = self._caller_now()
        voice = services.get_voice(self.caller.tenant, prompt_id)
        return VoiceRef(voice.prompt_id, voice.features_key, voice.features_sha256)

    async def _feed(self, message: dict[str, Any]) -> None:
        assert self.job is not None
        text, done = protocol.parse_text_message(message)
        if self.text_done:
            if text:
                raise ProtocolError("text after done: wait for is_end before starting a new request")
            return
        self._check_length(self.text_chars + len(text))
        self.text_chars += len(text)
        assert self.caller is not None and self.metered is not None
        await quotas.take_characters(self.caller.tenant.id, self.quota, len(text))
        self.metered["characters"] += len(text)
        if self.observed is not None:
            self.observed.text(len(text), done)
        try:
            await self.job.send_text(text, done)
        except queue.Full:
            raise ProtocolError("too many text messages in one request") from None
        self.text_done = done

    @staticmethod
    def _check_length(chars: int) -> None:
        if chars > settings.TTS_MAX_TEXT_CHARS:
            raise ProtocolError(f"text exceeds {settings.TTS_MAX_TEXT_CHARS} characters in one request")

    # --- job -> server -> client -------------------------------------------------------

    def _current(self, event: dict[str, Any]) -> bool:
        """Is this event from the running job? (Strays from an ended request are dropped.)"""
        if self.job is None or self.closed or event.get("job") != self.job.job_id:
            return False
        self.job.saw_event()
        return True

    async def tts_started(self, event: dict[str, Any]) -> None:
        self._current(event)

    async def tts_alive(self, event: dict[str, Any]) -> None:
        self._current(event)

    async def tts_chunk(self, event: dict[str, Any]) -> None:
        if not self._current(event) or self.request is None:
            return
        index = event["index"]
        try:
            if not self.sequence.accept(index):  # a redelivered chunk: the client already has it
                log.warning("dropped duplicate audio chunk %d of job %s", index, self.request_id)
                return
        except SynthesisFailed as exc:
            await self._fail(exc)
            return
        if self.metered is not None:
            self.metered["audio_seconds"] = float(event.get("seconds", 0.0))
        if self.observed is not None:
            self.observed.chunk(float(event.get("seconds", 0.0)))
        await self._send_json(protocol.chunk_message(self.request_id, index, event["data"], self.request))

    async def tts_end(self, event: dict[str, Any]) -> None:
        if not self._current(event) or self.request is None:
            return
        try:
            self.sequence.check_end(event["count"])
        except SynthesisFailed as exc:
            await self._fail(exc)
            return
        assert self.job is not None
        self.job.finished()
        self.job = None
        self.request = None
        await self._send_json(protocol.end_message(self.request_id, event["count"]))
        await self._end_request("completed")

    async def tts_error(self, event: dict[str, Any]) -> None:
        if not self._current(event):
            return
        await self._fail(SynthesisFailed(event["message"]))

    # --- helpers -------------------------------------------------------------------

    async def _send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(payload, ensure_ascii=False))

    async def _fail(self, exc: ApiError) -> None:
        """Every error ends the request: one error frame, then a close with a meaningful code."""
        self._cancel_job()
        if self.closed:
            return
        self.closed = True
        metrics.count_error("ws", exc)
        await self._send_json(protocol.error_message(exc.message))
        await self.close(code=exc.close_code)
        await self._end_request("error")

    async def _end_request(self, outcome: str) -> None:
        """Meter the request that just ended (``outcome``: completed, error, disconnected) and
        give back its lease; once."""
        observed, self.observed = self.observed, None
        if observed is not None:
            observed.end(outcome)
        metered, self.metered = self.metered, None
        if metered is None:
            return
        try:
            if metered["lease"]:
                await quotas.counters().release_stream(metered["tenant"], self.request_id)
            await database_sync_to_async(usage.record)(
                metered["tenant"], characters=metered["characters"], audio_seconds=metered["audio_seconds"],
                streams=1)
        except Exception:
            log.exception("could not meter request %s", self.request_id)

    async def _refresh_lease(self) -> None:
        """Keep this stream's lease alive (a lease whose web process died expires by itself)."""
        metered = self.metered
        if metered is None or not metered["lease"] or time.monotonic() - metered["refreshed"] < LEASE_REFRESH_S:
            return
        metered["refreshed"] = time.monotonic()
        try:
            await quotas.counters().refresh_stream(metered["tenant"], self.request_id)
        except Exception as exc:
            log.warning("could not refresh the stream lease of %s: %s", self.request_id, exc)

    def _cancel_job(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None
