"""Cloning: prompt in, features computed once and stored, voice row created."""
from __future__ import annotations

import logging

from django.conf import settings

from synthesis.engines.registry import get_loaded_engine
from synthesis.text.segmenter import units
from voices import services
from voices.exceptions import InvalidRequest
from voices.models import Tenant
from voices.prompt_audio import PromptLimits, PromptSourcePolicy, read_prompt_audio

log = logging.getLogger(__name__)

#: Fast speech is about 7 syllables a second; twice that is no transcript of this recording.
#: The check also bounds clone cost: the engine speaks the transcript once to match rate and pitch.
MAX_UNITS_PER_SECOND = 14.0


def source_policy() -> PromptSourcePolicy:
    return PromptSourcePolicy(
        path_roots=settings.TTS_PATH_ROOTS,
        allow_private_urls=settings.TTS_ALLOW_PRIVATE_URLS,
        max_bytes=settings.TTS_PROMPT_MAX_BYTES,
        url_timeout_s=settings.TTS_URL_TIMEOUT,
    )


def prompt_limits() -> PromptLimits:
    return PromptLimits(
        max_bytes=settings.TTS_PROMPT_MAX_BYTES,
        min_seconds=settings.TTS_PROMPT_MIN_SECONDS,
        max_seconds=settings.TTS_PROMPT_MAX_SECONDS,
        silence_dbfs=settings.TTS_PROMPT_SILENCE_DBFS,
    )


def clone_voice(tenant: Tenant, prompt_id: str, source: str, prompt_text: str, raw_sample_rate: int | None) -> bool:
    """Clone a voice (blocking: run it in a worker thread). Returns ``existed``."""
    audio = read_prompt_audio(
        source, policy=source_policy(), limits=prompt_limits(), raw_sample_rate=raw_sample_rate or 16000
    )
    check_transcript_fits(prompt_text, audio.duration)
    engine = get_loaded_engine()
    try:
        features = engine.extract_features(audio.samples, audio.sample_rate, prompt_text)
    except ValueError as exc:
        raise InvalidRequest(f"cannot clone from this prompt: {exc}") from None
    blobs = services.store_blobs(tenant, features.to_bytes(), audio.raw)
    created = services.create_voice(
        tenant,
        prompt_id,
        {
            "prompt_text": prompt_text,
            "engine": engine.name,
            "feature_version": engine.feature_version,
            "prompt_container": audio.container[:32],
            "prompt_sample_rate": audio.sample_rate,
            "prompt_seconds": round(audio.duration, 3),
            "metrics": {k: v for k, v in features.meta.items() if isinstance(v, (int, float, str, dict))},
        },
        blobs,
    )
    if created:
        log.info("cloned voice %s/%s from %.1f s of %s", tenant.slug, prompt_id, audio.duration, audio.container)
    return not created


def check_transcript_fits(prompt_text: str, seconds: float) -> None:
    length = units(prompt_text)
    if length > MAX_UNITS_PER_SECOND * seconds + 5:
        raise InvalidRequest(
            f"prompt_text is far longer than {seconds:.1f} s of audio can say; send the transcript of this recording"
        )
