"""WebSocket /tts: one connection, one request at a time (then another, if the client wants).

The consumer validates, resolves the voice, starts a job, relays text in and audio
out, and checks that chunks arrive numbered without gaps or duplicates.
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

from synthesis import protocol
from synthesis.engines.base import Features
from synthesis.exceptions import IdleTimeout, ProtocolError, SynthesisFailed, VoiceNotFound
from ttsplatform.errors import ApiError
from voices import services
from voices.exceptions import UnknownVoice
from voices.tenancy import tenant_for_request
from workers.embedded import EmbeddedJob, start_job
from workers.executors import run_in_pool

log = logging.getLogger(__name__)


class TtsConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.job: EmbeddedJob | None = None
        self.request_id = ""
        self.request: protocol.TtsRequest | None = None
        self.expected_index = 0
        self.text_chars = 0
        self.text_done = False
        self.closed = False
        self.last_client_message = time.monotonic()
        await self.accept()
        self.watchdog = asyncio.create_task(self._close_when_idle(settings.TTS_WS_IDLE_TIMEOUT))

    async def disconnect(self, code: int) -> None:
        self.closed = True
        self._cancel_job()
        self.watchdog.cancel()

    async def _close_when_idle(self, limit: float) -> None:
        """A client that goes quiet must not hold a stream slot (and its thread) forever."""
        while not self.closed:
            idle = time.monotonic() - self.last_client_message
            if idle >= limit:
                if self.job is None or not self.text_done:
                    await self._fail(IdleTimeout(f"no message from the client for {limit:g} s"))
                    return
                idle = 0.0  # the job is speaking everything it was given; wait for it
            await asyncio.sleep(max(0.5, limit - idle))

    # --- client -> server ------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.last_client_message = time.monotonic()
        try:
            message = protocol.decode_message(text_data)
            if self.job is None:
                if "req_params" not in message:
                    raise ProtocolError("send {\"req_params\": {...}} first")
                await self._start(message["req_params"])
                if "text" in message or "done" in message:
                    self._feed(message)
            else:
                if "req_params" in message:
                    raise ProtocolError("a request is already running on this connection")
                self._feed(message)
        except ApiError as exc:
            await self._fail(exc)
        except Exception:
            log.exception("unexpected error in /tts")
            await self._fail(SynthesisFailed("internal server error"))

    async def _start(self, raw_params: Any) -> None:
        request = protocol.parse_req_params(raw_params)
        features = await self._voice_features(request.prompt_id)
        self.request = request
        self.request_id = str(uuid.uuid4())
        self.expected_index = 0
        self.text_chars = 0
        self.text_done = False
        self.job = start_job(request, features, self.channel_name)

    async def _voice_features(self, prompt_id: str) -> Features:
        try:
            voice = await database_sync_to_async(self._get_voice)(prompt_id)
        except UnknownVoice as exc:
            raise VoiceNotFound(exc.message) from None
        return await run_in_pool("io", services.load_features, voice)

    def _get_voice(self, prompt_id: str) -> Any:
        return services.get_voice(tenant_for_request(None), prompt_id)

    def _feed(self, message: dict[str, Any]) -> None:
        assert self.job is not None
        text, done = protocol.parse_text_message(message)
        if self.text_done:
            if text:
                raise ProtocolError("text after done: wait for is_end before starting a new request")
            return
        self.text_chars += len(text)
        if self.text_chars > settings.TTS_MAX_TEXT_CHARS:
            raise ProtocolError(f"text exceeds {settings.TTS_MAX_TEXT_CHARS} characters in one request")
        try:
            self.job.send_text(text, done)
        except queue.Full:
            raise ProtocolError("too many text messages in one request") from None
        self.text_done = done

    # --- job -> server -> client -------------------------------------------------------

    async def tts_chunk(self, event: dict[str, Any]) -> None:
        if self.request is None or self.closed:
            return
        index = event["index"]
        if index != self.expected_index:
            await self._fail(SynthesisFailed(f"audio chunk {self.expected_index} was lost (got {index})"))
            return
        self.expected_index += 1
        await self._send_json(protocol.chunk_message(self.request_id, index, event["data"], self.request))

    async def tts_end(self, event: dict[str, Any]) -> None:
        if self.request is None or self.closed:
            return
        if event["count"] != self.expected_index:
            await self._fail(SynthesisFailed("audio stream ended with chunks missing"))
            return
        await self._send_json(protocol.end_message(self.request_id, event["count"]))
        self.job = None
        self.request = None

    async def tts_error(self, event: dict[str, Any]) -> None:
        if self.closed:
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
        await self._send_json(protocol.error_message(exc.message))
        await self.close(code=getattr(exc, "close_code", 4400))

    def _cancel_job(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None
