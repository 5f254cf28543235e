"""Admin-only audio endpoints for a voice: its stored prompt, and a synthesized preview.

Both are reached only through ``VoiceAdmin.get_urls`` (staff login, view permission).
Failures come back as short text/plain answers with a 4xx/5xx status (the page shows
the message next to the player), never as a 500 page.
"""
from __future__ import annotations

from asgiref.sync import async_to_sync
from django.http import HttpResponse

from api.preview import pcm_to_wav, synthesize_to_wav
from core.errors import ApiError, NotFound
from tenants import usage
from voices.feature_store import get_feature_store
from voices.models import Voice
from voices.prompt_audio import RAW_PCM

#: container names recorded by voices.prompt_audio -> what browsers expect
CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp4": "audio/mp4",
    "webm": "audio/webm",
    "aac": "audio/aac",
    "aiff": "audio/aiff",
}


#: previews are 16-bit mono WAV at this rate, behind a 44-byte header (synthesis.encoding.wav_header)
PREVIEW_RATE = 24000
WAV_HEADER_BYTES = 44


class VoiceGone(NotFound):
    def __init__(self) -> None:
        super().__init__("this voice no longer exists")


def plain_error(exc: ApiError) -> HttpResponse:
    status = exc.status if 400 <= exc.status < 600 else 500
    return HttpResponse(exc.message, status=status, content_type="text/plain; charset=utf-8")


def _audio(data: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def prompt_audio_response(voice: Voice) -> HttpResponse:
    """The prompt exactly as it was uploaded; raw PCM (no container) wrapped as WAV so it plays."""
    if not voice.prompt_audio_key:
        return plain_error(NotFound("no prompt audio is stored for this voice"))
    try:
        data = get_feature_store().get(voice.prompt_audio_key, voice.prompt_audio_sha256)
    except ApiError as exc:
        return plain_error(exc)
    except OSError as exc:
        return plain_error(ApiError(f"the prompt audio could not be read: {exc.__class__.__name__}", status=502))
    if voice.prompt_container == RAW_PCM:
        return _audio(pcm_to_wav(data, voice.prompt_sample_rate or 16000), "audio/wav", "prompt.wav")
    container = voice.prompt_container or "audio"
    return _audio(data, CONTENT_TYPES.get(container, "application/octet-stream"), f"prompt.{container}")


def preview_response(voice: Voice, text: str) -> HttpResponse:
    """``text`` spoken in ``voice`` as a WAV file (blocking: runs the job on the server's event loop).

    A preview is synthesis like a /tts stream, so it is metered to the voice's tenant
    as one stream with its characters and audio seconds."""
    try:
        wav = async_to_sync(synthesize_to_wav)(voice, text, PREVIEW_RATE)
    except ApiError as exc:
        return plain_error(exc)
    seconds = max(0, len(wav) - WAV_HEADER_BYTES) / (2 * PREVIEW_RATE)
    usage.record(voice.tenant_id, characters=len(text.strip()), audio_seconds=seconds, streams=1)
    return _audio(wav, "audio/wav", "preview.wav")
