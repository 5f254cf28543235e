"""Tone-cache bundles: a portable, self-describing copy of a tenant's voices.

A bundle is one uncompressed zip file, ``<cache_dir>/tone_cache.ttsc``:

- ``manifest.json``: format name and version, engine name, feature version, sample
  rate, creation time, and per voice its prompt text, metrics and the sha256 of each blob;
- ``features/<n>.npz``: the features (numpy arrays + JSON, never pickle);
- ``prompts/<n>.bin``: the original prompt audio, so features can be re-derived.

``cache_dir`` / ``cache_path`` may also be ``s3://bucket/prefix``: the bundle is then the
object ``prefix/tone_cache.ttsc`` (a ``cache_path`` ending in ``.ttsc`` names the object itself).

Saving builds the bundle in memory, then writes a temp file and renames it into place, or
PUTs it as one S3 object (atomic too). Loading reads the manifest, checks every listed blob
against its checksum and the engine against this server's, and only then writes anything:
a bad bundle loads nothing.
"""
from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from synthesis.engines.base import Features
from synthesis.engines.registry import get_engine
from ttsplatform.atomic_files import atomic_write
from ttsplatform.errors import ApiError, Forbidden, NotFound, PayloadTooLarge
from voices import s3, services
from voices.exceptions import InvalidRequest, ToneCacheError
from voices.feature_cache import get_feature_cache
from voices.feature_store import get_feature_store, sha256_hex
from voices.models import Tenant, Voice
from voices.safe_paths import read_client_file, resolve_client_path
from voices.validation import check_prompt_id

log = logging.getLogger(__name__)

FORMAT_NAME = "ttsplatform-tone-cache"
FORMAT_VERSION = 1
BUNDLE_NAME = "tone_cache.ttsc"
MANIFEST = "manifest.json"
MAX_MEMBERS = 20001
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class CacheArea:
    """Where a caller's tone caches may be: local directories and s3:// prefixes (None: anywhere)."""

    local_roots: tuple[Path, ...] | None
    s3_roots: tuple[str, ...] | None

    @classmethod
    def server_wide(cls) -> CacheArea:
        return cls(settings.TTS_PATH_ROOTS, settings.TTS_S3_CACHE_ROOTS)

    @classmethod
    def of_tenant(cls, tenant: Tenant) -> CacheArea:
        """A key-holding tenant's own area: <TTS_TENANT_CACHE_ROOT>/<slug>, and <s3 root>/<slug>."""
        local = settings.TTS_TENANT_CACHE_ROOT / tenant.slug
        local.mkdir(parents=True, exist_ok=True)
        s3_roots = tuple(f"{root.rstrip('/')}/{tenant.slug}" for root in settings.TTS_S3_CACHE_ROOTS or ())
        return cls((local,), s3_roots)


@dataclass(frozen=True)
class BundleVoice:
    prompt_id: str
    prompt_text: str
    features: bytes
    prompt_audio: bytes
    meta: dict[str, Any]


def _is_s3(raw: str) -> bool:
    """True for s3:// locations; any other URL scheme is refused."""
    if s3.is_s3_url(raw):
        return True
    if "://" in raw:
        raise ToneCacheError("cache locations must be local paths or s3://bucket/prefix")
    return False


# --- save --------------------------------------------------------------------------

def save_bundle(tenant: Tenant, cache_dir: str, prompt_ids: list[str], area: CacheArea | None = None) -> str:
    """Write the listed voices (all of the tenant's when empty) and return the bundle's location."""
    area = area or CacheArea.server_wide()
    if _is_s3(cache_dir):
        return _save_s3(tenant, _confined_s3(cache_dir, area).child(BUNDLE_NAME), prompt_ids)
    directory = resolve_client_path(cache_dir, area.local_roots, must_exist=False, kind="dir")
    data, count = _bundle_for(tenant, prompt_ids)
    path = directory / BUNDLE_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    except OSError as exc:
        raise ToneCacheError(f"cannot write tone cache to {directory}: {exc.strerror or exc}") from None
    log.info("saved %d voices of %s to %s", count, tenant.slug, path)
    return str(path)


def _save_s3(tenant: Tenant, target: s3.S3Location, prompt_ids: list[str]) -> str:
    data, count = _bundle_for(tenant, prompt_ids)
    s3.put_bytes(s3.get_client(), target, data, content_type="application/zip")
    log.info("saved %d voices of %s to %s", count, tenant.slug, target.url)
    return target.url


def _bundle_for(tenant: Tenant, prompt_ids: list[str]) -> tuple[bytes, int]:
    """The bundle's bytes (size-checked) and how many voices it holds."""
    voices = _select_voices(tenant, prompt_ids)
    data = _build_bundle(voices)
    if len(data) > settings.TTS_CACHE_MAX_BYTES:
        raise PayloadTooLarge(f"tone cache would be {len(data)} bytes, over the {settings.TTS_CACHE_MAX_BYTES}-byte limit")
    return data, len(voices)


def _select_voices(tenant: Tenant, prompt_ids: list[str]) -> list[Voice]:
    rows = Voice.objects.filter(tenant=tenant)
    if prompt_ids:
        rows = rows.filter(prompt_id__in=prompt_ids)
    found = {v.prompt_id: v for v in rows}
    missing = [p for p in prompt_ids if p not in found]
    if missing:
        raise NotFound(f"unknown prompt_ids: {', '.join(map(repr, missing))}")
    return [found[p] for p in prompt_ids] if prompt_ids else list(found.values())


def _build_bundle(voices: list[Voice]) -> bytes:
    engine = get_engine()
    store = get_feature_store()
    entries = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for n, voice in enumerate(voices):
            features = store.get(voice.features_key, voice.features_sha256)
            entry: dict[str, Any] = {
                "prompt_id": voice.prompt_id,
                "prompt_text": voice.prompt_text,
                "engine": voice.engine,
                "feature_version": voice.feature_version,
                "features": f"features/{n}.npz",
                "features_sha256": voice.features_sha256,
                "prompt_audio": None,
                "prompt_audio_sha256": None,
                "prompt_container": voice.prompt_container,
                "prompt_sample_rate": voice.prompt_sample_rate,
                "prompt_seconds": voice.prompt_seconds,
                "metrics": voice.metrics,
            }
            zf.writestr(entry["features"], features)
            if voice.prompt_audio_key:
                audio = store.get(voice.prompt_audio_key, voice.prompt_audio_sha256)
                entry["prompt_audio"] = f"prompts/{n}.bin"
                entry["prompt_audio_sha256"] = voice.prompt_audio_sha256
                zf.writestr(entry["prompt_audio"], audio)
            entries.append(entry)
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "engine": engine.name,
            "feature_version": engine.feature_version,
            "sample_rate": engine.sample_rate,
            "created_at": datetime.now(UTC).isoformat(),
            "voices": entries,
        }
        zf.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
    return buf.getvalue()


# --- load --------------------------------------------------------------------------

def load_bundle(tenant: Tenant, cache_path: str, prompt_ids: list[str], area: CacheArea | None = None) -> list[str]:
    """Restore the listed voices (all in the bundle when empty) into the tenant. All or nothing."""
    area = area or CacheArea.server_wide()
    if _is_s3(cache_path):
        target = _bundle_object(_confined_s3(cache_path, area))
        data = s3.get_bytes(s3.get_client(), target, max_bytes=settings.TTS_CACHE_MAX_BYTES)
        source = target.url
    else:
        source = _bundle_file(cache_path, area.local_roots)
        data = read_client_file(source, area.local_roots, max_bytes=settings.TTS_CACHE_MAX_BYTES)
    voices = read_bundle(data, prompt_ids)
    _install(tenant, voices, source=f"cache:{source}")
    return [v.prompt_id for v in voices]


def _confined_s3(raw: str, area: CacheArea | None = None) -> s3.S3Location:
    """Parse an s3:// cache location; it must lie under one of the area's s3 roots (if any are set)."""
    location = s3.parse_s3_url(raw)
    roots = (area or CacheArea.server_wide()).s3_roots
    if roots is not None and not any(_s3_within(location, s3.parse_s3_url(root)) for root in roots):
        raise Forbidden("this s3:// cache location is outside the allowed cache roots")
    return location


def _s3_within(location: s3.S3Location, root: s3.S3Location) -> bool:
    prefix = root.key.strip("/")
    return location.bucket == root.bucket and (not prefix or location.key == prefix
                                               or location.key.startswith(prefix + "/"))


def _bundle_object(location: s3.S3Location) -> s3.S3Location:
    """An s3 ``cache_path`` names the bundle object (``*.ttsc``) or the prefix it was saved under."""
    return location if location.key.endswith(".ttsc") else location.child(BUNDLE_NAME)


def _bundle_file(raw: str, roots: tuple[Path, ...] | None) -> str:
    """``cache_path`` may name the bundle file or the directory it was saved in."""
    try:
        resolve_client_path(raw, roots, must_exist=True, kind="dir")
    except ApiError:
        return raw
    return os.path.join(raw, BUNDLE_NAME)


def read_bundle(data: bytes, prompt_ids: list[str]) -> list[BundleVoice]:
    """Parse and fully verify a bundle in memory; raises ToneCacheError on any defect."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ToneCacheError("not a tone cache: the file is corrupt or truncated") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ToneCacheError("tone cache has too many entries")
        if sum(i.file_size for i in infos) > settings.TTS_CACHE_MAX_BYTES:
            raise ToneCacheError("tone cache expands beyond the size limit")
        manifest = _read_manifest(zf)
        engine = get_engine()
        if manifest.get("engine") != engine.name or manifest.get("feature_version") != engine.feature_version:
            raise ToneCacheError(
                f"tone cache was made by engine {manifest.get('engine')!r} "
                f"(features {manifest.get('feature_version')!r}); this server runs {engine.name!r} "
                f"(features {engine.feature_version!r})"
            )
        entries = manifest.get("voices")
        if not isinstance(entries, list):
            raise ToneCacheError("tone cache manifest has no voice list")
        by_id: dict[str, dict[str, Any]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("prompt_id"), str):
                raise ToneCacheError("tone cache manifest has a malformed voice entry")
            by_id[entry["prompt_id"]] = entry
        missing = [p for p in prompt_ids if p not in by_id]
        if missing:
            raise NotFound(f"not in this tone cache: {', '.join(map(repr, missing))}")
        chosen = [by_id[p] for p in prompt_ids] if prompt_ids else list(by_id.values())
        return [_read_voice(zf, entry) for entry in chosen]


def _read_manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise ToneCacheError("not a tone cache: no manifest") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise ToneCacheError("tone cache manifest is too large")
    try:
        manifest = json.loads(zf.read(info))
    except (zipfile.BadZipFile, ValueError, UnicodeDecodeError) as exc:
        raise ToneCacheError(f"tone cache manifest is corrupt: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ToneCacheError("not a tone cache of this platform")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ToneCacheError(f"unsupported tone cache version {manifest.get('format_version')!r}")
    return manifest


def _read_member(zf: zipfile.ZipFile, name: Any, sha256: Any, what: str) -> bytes:
    if not isinstance(name, str) or not isinstance(sha256, str):
        raise ToneCacheError(f"tone cache entry for {what} is malformed")
    try:
        data = zf.read(name)
    except KeyError:
        raise ToneCacheError(f"tone cache is missing {what}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ToneCacheError(f"tone cache data for {what} is corrupt: {exc}") from None
    if sha256_hex(data) != sha256:
        raise ToneCacheError(f"tone cache data for {what} fails its checksum")
    return data


def _read_voice(zf: zipfile.ZipFile, entry: dict[str, Any]) -> BundleVoice:
    pid = entry["prompt_id"]
    try:
        check_prompt_id(pid)
    except InvalidRequest as exc:
        raise ToneCacheError(f"tone cache has an invalid prompt_id: {exc.message}") from None
    features = _read_member(zf, entry.get("features"), entry.get("features_sha256"), f"features of {pid!r}")
    try:
        Features.from_bytes(features)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ToneCacheError(f"tone cache features of {pid!r} are unreadable: {exc}") from None
    audio = b""
    if entry.get("prompt_audio"):
        audio = _read_member(zf, entry.get("prompt_audio"), entry.get("prompt_audio_sha256"), f"prompt audio of {pid!r}")
    text = entry.get("prompt_text")
    if not isinstance(text, str):
        raise ToneCacheError(f"tone cache has no prompt text for {pid!r}")
    return BundleVoice(prompt_id=pid, prompt_text=text, features=features, prompt_audio=audio, meta=entry)


def _install(tenant: Tenant, voices: list[BundleVoice], source: str) -> None:
    engine = get_engine()
    stored: list[services.StoredBlobs] = []
    try:
        for voice in voices:
            stored.append(services.store_blobs(tenant, voice.features, voice.prompt_audio))
        replaced: list[Voice] = []
        with transaction.atomic():
            for voice, blobs in zip(voices, stored, strict=True):
                old = Voice.objects.select_for_update().filter(tenant=tenant, prompt_id=voice.prompt_id).first()
                if old is not None:
                    replaced.append(old)
                    old.delete()
                meta = voice.meta
                services.insert_voice(
                    tenant,
                    voice.prompt_id,
                    {
                        "prompt_text": voice.prompt_text,
                        "engine": engine.name,
                        "feature_version": engine.feature_version,
                        "prompt_container": str(meta.get("prompt_container") or "")[:32],
                        "prompt_sample_rate": _int(meta.get("prompt_sample_rate")),
                        "prompt_seconds": _float(meta.get("prompt_seconds")),
                        "metrics": meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {},
                        "source": source[:512],
                    },
                    blobs,
                )
    except BaseException:
        for blobs in stored:
            services.delete_blobs(blobs.features_key, blobs.prompt_audio_key)
        raise
    cache = get_feature_cache()
    for old in replaced:
        cache.discard(old.features_sha256)
        services.delete_blobs(old.features_key, old.prompt_audio_key)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
