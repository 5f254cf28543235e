"""Cloning: prompt in, features computed once and stored, voice row created.

A clone has two halves. The web half fetches, decodes and vets the prompt and stores
its audio; the engine half extracts features and registers the voice. In embedded
mode both run in this process's clone pool; in distributed mode the engine half runs
on a clone worker, which reads the stored prompt audio back from the feature store.
"""
from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from synthesis.engines.registry import get_loaded_engine
from synthesis.text.segmenter import units
from voices import refine, services
from voices.errors import InvalidRequest
from voices.job_backend import job_backend
from voices.models import Tenant
from voices.prompt_audio import PromptAudio, PromptLimits, PromptSourcePolicy, decode_audio_bytes, read_prompt_audio

log = logging.getLogger(__name__)

#: Fast speech is about 7 syllables a second; twice that is no transcript of this recording.
#: The check also bounds clone cost: the engine speaks the transcript once to match rate and pitch.
MAX_UNITS_PER_SECOND = 14.0


def source_policy(path_roots: tuple[Path, ...] | None) -> PromptSourcePolicy:
    """Where a prompt may come from; ``path_roots`` confines local paths (None: open mode)."""
    return PromptSourcePolicy(
        path_roots=path_roots,
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


def clone_voice(tenant: Tenant, prompt_id: str, source: str, prompt_text: str, raw_sample_rate: int | None,
                note: str, path_roots: tuple[Path, ...] | None) -> bool:
    """Clone a voice (blocking: run it in a worker thread). Returns ``existed``.

    ``path_roots``: where a local ``source`` path may lie (the caller's area; None: anywhere
    but the server's own data)."""
    backend = job_backend()
    backend.check_can_clone()
    audio = read_prompt_audio(
        source, policy=source_policy(path_roots), limits=prompt_limits(), raw_sample_rate=raw_sample_rate or 16000
    )
    check_transcript_fits(prompt_text, audio.duration)
    audio_blob = services.store_blob(tenant, audio.raw, "audio")
    return backend.clone(tenant, prompt_id, prompt_text, audio, audio_blob, note)


def clone_stored_prompt(tenant: Tenant, prompt_id: str, prompt_text: str, audio_blob: services.StoredBlob,
                        sample_rate: int, note: str = "") -> bool:
    """The engine half of a clone, from prompt audio already in the feature store (workers)."""
    try:
        raw = services.get_feature_store().get(audio_blob.key, audio_blob.sha256)
        samples, rate, container = decode_audio_bytes(raw, raw_sample_rate=sample_rate,
                                                      max_seconds=settings.TTS_PROMPT_MAX_SECONDS)
        audio = PromptAudio(samples=samples, sample_rate=rate, raw=raw, container=container)
    except BaseException:
        services.delete_blobs(audio_blob.key)
        raise
    return register_clone(tenant, prompt_id, prompt_text, audio, audio_blob, note)


def register_clone(tenant: Tenant, prompt_id: str, prompt_text: str, audio: PromptAudio,
                   audio_blob: services.StoredBlob, note: str = "") -> bool:
    """Extract features and insert the voice; the prompt blob is dropped if this fails. Returns ``existed``."""
    try:
        engine = get_loaded_engine()
        try:
            features = engine.extract_features(audio.samples, audio.sample_rate, prompt_text)
        except ValueError as exc:
            raise InvalidRequest(f"cannot clone from this prompt: {exc}") from None
        feature_blob = services.store_blob(tenant, features.to_bytes(), "npz")
    except BaseException:
        services.delete_blobs(audio_blob.key)
        raise
    blobs = services.StoredBlobs(feature_blob.key, feature_blob.sha256, audio_blob.key, audio_blob.sha256)
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
            "provenance_note": note,
            "state": refine.initial_state(engine),
        },
        blobs,
    )
    if created:
        log.info("cloned voice %s/%s from %.1f s of %s", tenant.slug, prompt_id, audio.duration, audio.container)
        if refine.enabled(engine):
            refine.schedule_new(blobs.features_key, blobs.features_sha256)
    return not created


def check_transcript_fits(prompt_text: str, seconds: float) -> None:
    length = units(prompt_text)
    if length > MAX_UNITS_PER_SECOND * seconds + 5:
        raise InvalidRequest(
            f"prompt_text is far longer than {seconds:.1f} s of audio can say; send the transcript of this recording"
        )
