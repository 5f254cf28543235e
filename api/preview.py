"""Speak a short text in a voice and return it as one WAV file (the admin's preview player).

This is a client of the job machinery, like the /tts consumer: a fresh channel on the
channel layer, a job started through ``workers.dispatch`` (a thread of this process in
embedded mode, a Celery worker in distributed mode), the text sent in one piece, raw
PCM chunks collected in order. One code path for both modes.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from typing import Any

from channels.layers import get_channel_layer

from api.errors import PreviewTimeout
from synthesis.encoding import wav_header
from synthesis.request import TtsRequest
from voices.errors import InvalidRequest
from voices.models import Voice
from workers import events
from workers.dispatch import start_job
from workers.errors import SynthesisFailed
from workers.runner import VoiceRef

#: a preview is a sentence or two, not a book
MAX_PREVIEW_CHARS = 300
#: how often a waiting preview asks the job whether its worker is still alive
LIVENESS_TICK_S = 0.5


def pcm_to_wav(pcm: bytes, sample_rate: int) -> bytes:
    """Mono signed 16-bit little-endian PCM as a complete RIFF/WAVE file."""
    if len(pcm) % 2:
        pcm = pcm[:-1]  # a torn last sample cannot be played anyway
    return wav_header(sample_rate, len(pcm)) + pcm


def default_timeout(text: str) -> float:
    """Generous: the CPU engine runs at about 0.5x real time, and a worker may need to start."""
    return 30.0 + 0.5 * len(text)


async def synthesize_to_wav(voice: Voice, text: str, sample_rate: int = 24000, *,
                            timeout: float | None = None) -> bytes:
    """Synthesize ``text`` in ``voice``; the whole utterance as WAV bytes.

    Raises ApiError subclasses: InvalidRequest (empty or too long text), ServerBusy (no
    stream slot free), SynthesisFailed (the job failed or its worker was lost),
    PreviewTimeout (no complete answer in ``timeout`` seconds).
    """
    text = text.strip()
    if not text:
        raise InvalidRequest("the preview text is empty")
    if len(text) > MAX_PREVIEW_CHARS:
        raise InvalidRequest(f"the preview text is longer than {MAX_PREVIEW_CHARS} characters")
    limit = default_timeout(text) if timeout is None else timeout

    layer = get_channel_layer()
    channel = await layer.new_channel()
    job_id = uuid.uuid4().hex
    request = TtsRequest(prompt_id=voice.prompt_id, audio_format="pcm", sample_rate=sample_rate, chunk_mode="stream")
    job = await start_job(job_id, request, VoiceRef(voice.prompt_id, voice.features_key, voice.features_sha256),
                          channel)

    pcm = bytearray()
    sequence = events.ChunkSequence()
    finished = False
    deadline = time.monotonic() + limit
    receiving: asyncio.Task[dict[str, Any]] | None = None
    try:
        await job.send_text(text, True)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PreviewTimeout(f"the preview was not synthesized within {limit:g} s")
            if receiving is None:
                receiving = asyncio.ensure_future(layer.receive(channel))
            # Wait without cancelling the receive, so no event is lost between ticks.
            done, _ = await asyncio.wait({receiving}, timeout=min(remaining, LIVENESS_TICK_S))
            if not done:
                problem = job.liveness_problem()
                if problem is not None:
                    raise SynthesisFailed(problem)
                continue
            event, receiving = receiving.result(), None
            if event.get("job") != job_id:
                continue  # not ours (cannot normally happen on a fresh channel)
            job.saw_event()
            kind = event.get("type")
            if kind == events.CHUNK:
                if not sequence.accept(event.get("index")):
                    continue  # redelivered: already in pcm
                try:
                    pcm += base64.b64decode(event["data"], validate=True)
                except (binascii.Error, KeyError, TypeError):
                    raise SynthesisFailed(f"audio chunk {sequence.expected - 1} is not valid base64") from None
            elif kind == events.END:
                sequence.check_end(event.get("count"))
                finished = True
                break
            elif kind == events.ERROR:
                raise SynthesisFailed(str(event.get("message") or "synthesis failed"))
            # STARTED and ALIVE only prove the job is alive (saw_event above)
    finally:
        if receiving is not None:
            receiving.cancel()  # not awaited: a cancelled receive has nothing to report
        if finished:
            job.finished()
        else:
            job.cancel()
    if not pcm:
        raise SynthesisFailed("the engine produced no audio for this text")
    return pcm_to_wav(bytes(pcm), sample_rate)
