"""Tone-cache bundles: a portable, self-describing copy of a tenant's voices.

A bundle is one uncompressed zip file, ``<cache_dir>/tone_cache.ttsc``:

- ``manifest.json``: format name and version, engine name, feature version, sample
  rate, creation time, and per voice its prompt text, metrics and the sha256 of each blob;
- ``features/<n>.npz``: the features (numpy arrays + JSON, never pickle);
- ``prompts/<n>.bin``: the original prompt audio, so features can be re-derived.

``cache_dir`` / ``cache_path`` may also be ``s3://bucket/prefix``: the bundle is then the
object ``prefix/tone_cache.ttsc`` (a ``cache_path`` ending in ``.ttsc`` names the object itself).

Saving builds the bundle in memory, then writes a temp file and renames it into place, or
PUTs it as one S3 object (atomic too). Loading treats the bundle as untrusted (it may be
written by hand): it checks the sizes members declare before expanding any (zip bombs get
413), reads no member past its cap, parses JSON with bounded depth, holds every manifest
field to /clone's rules, checks every blob against its checksum and the features against
the engine's feature schema (shapes, ranges, finite values), and only then writes anything:
a bad bundle loads nothing.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from core.atomic_files import atomic_write
from core.errors import ApiError, Forbidden, NotFound, PayloadTooLarge
from core.json_text import loads_text
from core.zip_members import BadMember, read_member
from synthesis.engines.base import MAX_FEATURE_BYTES, Engine, Features, check_finite_json
from synthesis.engines.registry import get_engine
from tenants import quotas
from voices import s3, services
from voices.errors import InvalidRequest, ToneCacheError
from voices.feature_cache import get_feature_cache
from voices.feature_store import get_feature_store, sha256_hex
from voices.models import Tenant, Voice
from voices.safe_paths import read_client_file, resolve_client_path
from voices.validation import MAX_IDS_PER_REQUEST, MAX_PROMPT_TEXT_CHARS, check_prompt_id, required_text

log = logging.getLogger(__name__)

FORMAT_NAME = "ttsplatform-tone-cache"
FORMAT_VERSION = 1
BUNDLE_NAME = "tone_cache.ttsc"
MANIFEST = "manifest.json"
MAX_MEMBERS = 20001
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: A bundle may expand to at most MAX_EXPANSION times its own size plus EXPANSION_SLACK (and
#: never past TTS_CACHE_MAX_BYTES). This platform writes bundles uncompressed (1x), one
#: compressed by hand stays well under 10x, and a zip bomb (1000x) is refused from the sizes
#: its members declare, before one byte is expanded.
MAX_EXPANSION = 10
EXPANSION_SLACK = 32 * 1024 * 1024
#: Per-field bounds for manifest entries (prompt_text and prompt_id follow /clone's rules).
MAX_METRICS_BYTES = 64 * 1024
MAX_CONTAINER_CHARS = 32
MAX_SAMPLE_RATE = 768000
MAX_PROMPT_SECONDS = 3600.0
MAX_MEMBER_NAME_CHARS = 256
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CacheArea:
    """Where a caller's tone caches may be: local directories and s3:// prefixes (None: anywhere)."""

    local_roots: tuple[Path, ...] | None
    s3_roots: tuple[str, ...] | None

    @classmethod
    def server_wide(cls) -> CacheArea:
        return cls(settings.TTS_PATH_ROOTS, settings.TTS_S3_CACHE_ROOTS)

    @classmethod
    def of_caller(cls, tenant: Tenant, keyed: bool) -> CacheArea:
        """A key holder's own area; the server-wide one for open mode's callers."""
        return cls.of_tenant(tenant) if keyed else cls.server_wide()

    @classmethod
    def of_tenant(cls, tenant: Tenant) -> CacheArea:
        """A key-holding tenant's own area: <TTS_TENANT_CACHE_ROOT>/<slug>, and <s3 root>/<slug>."""
        local = settings.TTS_TENANT_CACHE_ROOT / tenant.slug
        local.mkdir(parents=True, exist_ok=True)
        s3_roots = tuple(f"{root.rstrip('/')}/{tenant.slug}" for root in settings.TTS_S3_CACHE_ROOTS or ())
        return cls((local,), s3_roots)


@dataclass(frozen=True)
class BundleEntry:
    """One voice of a manifest, every field checked; blobs as (member name, sha256)."""

    prompt_id: str
    prompt_text: str
    features: tuple[str, str]
    prompt_audio: tuple[str, str] | None
    prompt_container: str
    prompt_sample_rate: int
    prompt_seconds: float
    metrics: dict[str, Any]


@dataclass(frozen=True)
class BundleVoice:
    prompt_id: str
    prompt_text: str
    features: bytes
    prompt_audio: bytes
    entry: BundleEntry


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
        return _save_s3(tenant, confined_s3(cache_dir, area).child(BUNDLE_NAME), prompt_ids)
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
        target = _bundle_object(confined_s3(cache_path, area))
        data = s3.get_bytes(s3.get_client(), target, max_bytes=settings.TTS_CACHE_MAX_BYTES)
        source = target.url
    else:
        source = _bundle_file(cache_path, area.local_roots)
        data = read_client_file(source, area.local_roots, max_bytes=settings.TTS_CACHE_MAX_BYTES)
    voices = read_bundle(data, prompt_ids)
    _install(tenant, voices, source=f"cache:{source}")
    return [v.prompt_id for v in voices]


def confined_s3(raw: str, area: CacheArea | None = None) -> s3.S3Location:
    """Parse an s3:// location (a tone cache, a batch job's destination); it must lie under one of
    the area's s3 roots (if any are set)."""
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
    """Parse and fully verify a bundle in memory; raises ToneCacheError (400) on any defect and
    PayloadTooLarge (413) when it, or one of its members, is larger than allowed.

    Memory stays bounded: sizes are checked as declared before anything is expanded, and
    no member is read past its own cap (zipfile never yields more than a member declares).
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, OverflowError):
        raise ToneCacheError("not a tone cache: the file is corrupt or truncated") from None
    with zf:
        _check_declared_sizes(zf.infolist(), len(data))
        manifest = _read_manifest(zf)
        engine = get_engine()
        if manifest.get("engine") != engine.name or manifest.get("feature_version") != engine.feature_version:
            raise ToneCacheError(
                f"tone cache was made by engine {_short(manifest.get('engine'))} "
                f"(features {_short(manifest.get('feature_version'))}); this server runs {engine.name!r} "
                f"(features {engine.feature_version!r})"
            )
        by_id = _manifest_voices(manifest)
        missing = [p for p in prompt_ids if p not in by_id]
        if missing:
            raise NotFound(f"not in this tone cache: {', '.join(map(repr, missing))}")
        chosen = [by_id[p] for p in prompt_ids] if prompt_ids else list(by_id.values())
        return [_read_voice(zf, entry, engine) for entry in chosen]


def _check_declared_sizes(infos: list[zipfile.ZipInfo], bundle_bytes: int) -> None:
    """Member count, unique names, and what the members say they expand to (a zip bomb says so)."""
    if len(infos) > MAX_MEMBERS:
        raise ToneCacheError("tone cache has too many entries")
    if len({i.filename for i in infos}) != len(infos):
        raise ToneCacheError("tone cache holds two members of the same name")
    declared = sum(i.file_size for i in infos)
    limit = min(settings.TTS_CACHE_MAX_BYTES, bundle_bytes * MAX_EXPANSION + EXPANSION_SLACK)
    if declared > limit:
        raise PayloadTooLarge(f"tone cache expands to {declared} bytes, more than the {limit} bytes a "
                              f"{bundle_bytes}-byte bundle may (at most {MAX_EXPANSION}x plus "
                              f"{EXPANSION_SLACK // 2**20} MiB, and TTS_CACHE_MAX_BYTES)")


def _read_capped(zf: zipfile.ZipFile, name: str, cap: int, what: str) -> bytes:
    """One member's bytes, refused from its declared size when over ``cap`` and never read past it."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ToneCacheError(f"tone cache is missing {what}") from None
    if info.file_size > cap:
        raise PayloadTooLarge(f"tone cache {what} is {info.file_size} bytes, over the {cap}-byte limit")
    try:
        return read_member(zf, info)
    except BadMember as exc:
        raise ToneCacheError(f"tone cache data for {what} is corrupt: {exc}") from None


def _read_manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    raw = _read_capped(zf, MANIFEST, MAX_MANIFEST_BYTES, "manifest")
    try:
        manifest = loads_text(raw)
    except ValueError as exc:  # not JSON, not UTF-8, nested too deep, a lone surrogate
        raise ToneCacheError(f"tone cache manifest is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ToneCacheError("not a tone cache of this platform")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ToneCacheError(f"unsupported tone cache version {_short(manifest.get('format_version'))}")
    return manifest


def _manifest_voices(manifest: dict[str, Any]) -> dict[str, BundleEntry]:
    """Every voice the manifest lists, each field checked (the whole bundle is refused for one bad field)."""
    entries = manifest.get("voices")
    if not isinstance(entries, list):
        raise ToneCacheError("tone cache manifest has no voice list")
    if len(entries) > MAX_IDS_PER_REQUEST:
        raise ToneCacheError(f"tone cache lists {len(entries)} voices, more than {MAX_IDS_PER_REQUEST}")
    by_id: dict[str, BundleEntry] = {}
    # Each member belongs to one voice: else a few declared megabytes, named by thousands of
    # voices, would be read thousands of times and defeat the size checks.
    owners: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ToneCacheError("tone cache manifest has a malformed voice entry")
        checked = _checked_entry(entry)
        if checked.prompt_id in by_id:
            raise ToneCacheError(f"tone cache lists voice {checked.prompt_id!r} twice")
        by_id[checked.prompt_id] = checked
        for ref in (checked.features, checked.prompt_audio):
            if ref is None:
                continue
            if ref[0] in owners or ref[0] == MANIFEST:
                raise ToneCacheError(f"tone cache voice {checked.prompt_id!r} names member {ref[0][:80]!r}, "
                                     f"which belongs to {owners.get(ref[0], 'the manifest')!r}")
            owners[ref[0]] = checked.prompt_id
    return by_id


def _checked_entry(entry: dict[str, Any]) -> BundleEntry:
    """A manifest voice entry, held to the rules /clone applies to the same fields."""
    try:
        pid = check_prompt_id(entry.get("prompt_id"))
    except InvalidRequest as exc:
        raise ToneCacheError(f"tone cache has an invalid prompt_id: {exc.message}") from None

    def bad(message: str) -> ToneCacheError:
        return ToneCacheError(f"tone cache voice {pid!r}: {message}")

    try:
        text = required_text(entry, "prompt_text", MAX_PROMPT_TEXT_CHARS)
    except InvalidRequest as exc:
        raise bad(exc.message) from None
    features = _member_ref(entry, "features", required=True, bad=bad)
    audio = _member_ref(entry, "prompt_audio", required=False, bad=bad)
    container = entry.get("prompt_container")
    if container is None:
        container = ""
    if not isinstance(container, str) or len(container) > MAX_CONTAINER_CHARS or not container.isprintable():
        raise bad(f"prompt_container must be a printable string of at most {MAX_CONTAINER_CHARS} characters")
    rate = entry.get("prompt_sample_rate")
    if rate is None:
        rate = 0
    if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= MAX_SAMPLE_RATE:
        raise bad(f"prompt_sample_rate must be an integer between 0 and {MAX_SAMPLE_RATE}")
    seconds = entry.get("prompt_seconds")
    if seconds is None:
        seconds = 0.0
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds)
            or not 0 <= seconds <= MAX_PROMPT_SECONDS):
        raise bad(f"prompt_seconds must be a number between 0 and {MAX_PROMPT_SECONDS:g}")
    metrics = entry.get("metrics")
    if metrics is None:
        metrics = {}
    if not isinstance(metrics, dict):
        raise bad("metrics must be an object")
    try:
        check_finite_json(metrics, "metrics")
        size = len(json.dumps(metrics, ensure_ascii=False).encode("utf-8"))
    except ValueError as exc:
        raise bad(str(exc)) from None
    if size > MAX_METRICS_BYTES:
        raise bad(f"metrics are {size} bytes, over the {MAX_METRICS_BYTES}-byte limit")
    return BundleEntry(pid, text, features, audio, container, rate, float(seconds), metrics)


def _member_ref(entry: dict[str, Any], field: str, *, required: bool,
                bad: Callable[[str], ToneCacheError]) -> tuple[str, str] | None:
    """(member name, sha256) of a blob the entry names; None when an optional one is absent."""
    name = entry.get(field)
    if not name and not required:
        return None
    sha256 = entry.get(f"{field}_sha256")
    if not isinstance(name, str) or not name or len(name) > MAX_MEMBER_NAME_CHARS:
        raise bad(f"{field} must name a member of the bundle")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise bad(f"{field}_sha256 must be 64 lowercase hex digits")
    return name, sha256


def _read_blob(zf: zipfile.ZipFile, ref: tuple[str, str], cap: int, what: str) -> bytes:
    data = _read_capped(zf, ref[0], cap, what)
    if sha256_hex(data) != ref[1]:
        raise ToneCacheError(f"tone cache data for {what} fails its checksum")
    return data


def _read_voice(zf: zipfile.ZipFile, entry: BundleEntry, engine: Engine) -> BundleVoice:
    """The voice's blobs, checksummed, and its features held to the engine's feature schema."""
    pid = entry.prompt_id
    features = _read_blob(zf, entry.features, MAX_FEATURE_BYTES, f"features of {pid!r}")
    try:
        engine.check_features(Features.from_bytes(features))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ToneCacheError(f"tone cache features of {pid!r} are not valid {engine.name!r} features: {exc}") from None
    audio = b""
    if entry.prompt_audio is not None:
        audio = _read_blob(zf, entry.prompt_audio, settings.TTS_PROMPT_MAX_BYTES, f"prompt audio of {pid!r}")
    return BundleVoice(prompt_id=pid, prompt_text=entry.prompt_text, features=features, prompt_audio=audio,
                       entry=entry)


def _short(value: Any) -> str:
    """A manifest value for an error message, cut short (it may be anything, of any size)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _install(tenant: Tenant, voices: list[BundleVoice], source: str) -> None:
    engine = get_engine()
    stored: list[services.StoredBlobs] = []
    try:
        for voice in voices:
            stored.append(services.store_blobs(tenant, voice.features, voice.prompt_audio))
        replaced: list[Voice] = []
        with transaction.atomic():
            # The tenant's row first, as every voice insert locks it (tenants.quotas.guard_voice_insert):
            # locking a voice row before it would deadlock against a concurrent clone of that voice.
            quotas.lock_tenant(tenant.id)
            for voice, blobs in zip(voices, stored, strict=True):
                old = Voice.objects.select_for_update().filter(tenant=tenant, prompt_id=voice.prompt_id).first()
                if old is not None:
                    replaced.append(old)
                    old.delete()
                entry = voice.entry
                services.insert_voice(
                    tenant,
                    voice.prompt_id,
                    {
                        "prompt_text": voice.prompt_text,
                        "engine": engine.name,
                        "feature_version": engine.feature_version,
                        "prompt_container": entry.prompt_container,
                        "prompt_sample_rate": entry.prompt_sample_rate,
                        "prompt_seconds": entry.prompt_seconds,
                        "metrics": entry.metrics,
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

