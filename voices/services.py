"""What the voice endpoints do, as plain sync functions (the views run them off the event loop)."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from core.errors import ApiError
from synthesis.engines.base import Features
from tenants import quotas
from voices.errors import UnknownVoice
from voices.feature_cache import get_feature_cache
from voices.feature_store import get_feature_store, sha256_hex
from voices.models import Tenant, Voice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredBlobs:
    features_key: str
    features_sha256: str
    prompt_audio_key: str
    prompt_audio_sha256: str


def new_key(tenant: Tenant, suffix: str) -> str:
    return f"{tenant.slug}/{uuid.uuid4().hex}.{suffix}"


@dataclass(frozen=True)
class StoredBlob:
    key: str
    sha256: str


def store_blob(tenant: Tenant, data: bytes, suffix: str) -> StoredBlob:
    key = new_key(tenant, suffix)
    get_feature_store().put(key, data)
    return StoredBlob(key, sha256_hex(data))


def store_blobs(tenant: Tenant, features: bytes, prompt_audio: bytes | None) -> StoredBlobs:
    feature_blob = store_blob(tenant, features, "npz")
    if not prompt_audio:
        return StoredBlobs(feature_blob.key, feature_blob.sha256, "", "")
    try:
        audio_blob = store_blob(tenant, prompt_audio, "audio")
    except BaseException:
        delete_blobs(feature_blob.key)
        raise
    return StoredBlobs(feature_blob.key, feature_blob.sha256, audio_blob.key, audio_blob.sha256)


def delete_blobs(*keys: str) -> None:
    store = get_feature_store()
    for key in keys:
        if key:
            try:
                store.delete(key)
            except (OSError, ApiError) as exc:  # storage away: leave an orphan, never mask the caller's outcome
                log.warning("could not delete stored blob %s: %s", key, exc)


def list_prompt_ids(tenant: Tenant) -> list[str]:
    return list(Voice.objects.filter(tenant=tenant).values_list("prompt_id", flat=True))


def voice_exists(tenant: Tenant, prompt_id: str) -> bool:
    return Voice.objects.filter(tenant=tenant, prompt_id=prompt_id).exists()


def get_voice(tenant: Tenant, prompt_id: str) -> Voice:
    try:
        return Voice.objects.get(tenant=tenant, prompt_id=prompt_id)
    except Voice.DoesNotExist:
        raise UnknownVoice(prompt_id) from None


def insert_voice(tenant: Tenant, prompt_id: str, fields: dict, blobs: StoredBlobs) -> Voice:
    """Insert a voice row pointing at already stored blobs (in the caller's transaction, if any).

    The one place voice rows are made, so the tenant's voice limit is enforced here
    (QuotaExceeded, 429): whatever path creates a voice cannot pass it.
    """
    with transaction.atomic():
        quotas.guard_voice_insert(tenant.id)
        return Voice.objects.create(
            tenant=tenant,
            prompt_id=prompt_id,
            features_key=blobs.features_key,
            features_sha256=blobs.features_sha256,
            prompt_audio_key=blobs.prompt_audio_key,
            prompt_audio_sha256=blobs.prompt_audio_sha256,
            **fields,
        )


def create_voice(tenant: Tenant, prompt_id: str, fields: dict, blobs: StoredBlobs) -> bool:
    """Insert the voice row. Returns False (and drops the blobs) if a concurrent clone won;
    drops them too, and raises, if the row is refused (e.g. the tenant's voice limit)."""
    try:
        with transaction.atomic():
            insert_voice(tenant, prompt_id, fields, blobs)
    except IntegrityError:
        delete_blobs(blobs.features_key, blobs.prompt_audio_key)
        return False
    except BaseException:
        delete_blobs(blobs.features_key, blobs.prompt_audio_key)
        raise
    return True


def remove_voice(tenant: Tenant, prompt_id: str) -> None:
    voice = get_voice(tenant, prompt_id)
    voice.delete()
    get_feature_cache().discard(voice.features_sha256)
    delete_blobs(voice.features_key, voice.prompt_audio_key)


def load_features_by_key(features_key: str, features_sha256: str) -> Features:
    """Decoded features, through the process's bounded LRU.

    The LRU is keyed by checksum, so a reloaded voice (new features, new checksum) can
    never be served stale, by this process or any other worker.
    """
    cache = get_feature_cache()
    features = cache.get(features_sha256)
    if features is None:
        data = get_feature_store().get(features_key, features_sha256)
        features = Features.from_bytes(data)
        cache.put(features_sha256, features)
    return features


def describe_voice(voice: Voice) -> dict[str, object]:
    """The public description of a voice (GET /voices/<prompt_id>)."""
    metrics = voice.metrics or {}
    return {
        "prompt_id": voice.prompt_id,
        "state": voice.state,
        "similarity": metrics.get("similarity"),
        "sim": voice.sim,
        "engine": voice.engine,
        "feature_version": voice.feature_version,
        "prompt_text": voice.prompt_text,
        "prompt_seconds": voice.prompt_seconds,
        "source": voice.source,
        "provenance_note": voice.provenance_note,
        "metrics": metrics,
        "created_at": voice.created_at.isoformat(),
        "updated_at": voice.updated_at.isoformat(),
    }
