"""What the voice endpoints do, as plain sync functions (the views run them off the event loop)."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from synthesis.engines.base import Features
from voices.exceptions import UnknownVoice
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


def store_blobs(tenant: Tenant, features: bytes, prompt_audio: bytes | None) -> StoredBlobs:
    store = get_feature_store()
    features_key = new_key(tenant, "npz")
    store.put(features_key, features)
    audio_key = ""
    if prompt_audio:
        audio_key = new_key(tenant, "audio")
        try:
            store.put(audio_key, prompt_audio)
        except BaseException:
            store.delete(features_key)
            raise
    return StoredBlobs(features_key, sha256_hex(features), audio_key, sha256_hex(prompt_audio) if prompt_audio else "")


def delete_blobs(*keys: str) -> None:
    store = get_feature_store()
    for key in keys:
        if key:
            try:
                store.delete(key)
            except OSError:
                log.exception("could not delete stored blob %s", key)


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
    """Insert a voice row pointing at already stored blobs (inside the caller's transaction)."""
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
    """Insert the voice row. Returns False (and drops the blobs) if a concurrent clone won."""
    try:
        with transaction.atomic():
            insert_voice(tenant, prompt_id, fields, blobs)
    except IntegrityError:
        delete_blobs(blobs.features_key, blobs.prompt_audio_key)
        return False
    return True


def remove_voice(tenant: Tenant, prompt_id: str) -> None:
    voice = get_voice(tenant, prompt_id)
    voice.delete()
    get_feature_cache().discard(voice.features_sha256)
    delete_blobs(voice.features_key, voice.prompt_audio_key)


def load_features(voice: Voice) -> Features:
    """Decoded features of a voice, through the process's bounded LRU."""
    cache = get_feature_cache()
    features = cache.get(voice.features_sha256)
    if features is None:
        data = get_feature_store().get(voice.features_key, voice.features_sha256)
        features = Features.from_bytes(data)
        cache.put(voice.features_sha256, features)
    return features
