"""Hand-made tone-cache bundles and feature blobs are untrusted: every field is checked, sizes are
checked before anything is expanded, and a bad bundle is refused whole with a 4xx (issue 17, items 7
and 9). These tests parse bundles in process with the server's own code; tests/e2e/test_tone_cache.py
sends the same kinds of bundle to a running server."""
from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from core.errors import ApiError, PayloadTooLarge
from synthesis.engines.base import MAX_FEATURE_BYTES, Features
from synthesis.engines.kokoro.voice_pack import STYLE_SHAPE
from synthesis.engines.registry import get_engine
from voices.feature_store import sha256_hex
from voices.tone_cache import FORMAT_NAME, FORMAT_VERSION, read_bundle

DEEP = "[" * 100000 + "]" * 100000
MB = 1024 * 1024


def kokoro_meta(**changes: Any) -> dict[str, Any]:
    engine = get_engine()
    meta = {"engine": engine.name, "feature_version": engine.feature_version, "pitch_factor": 1.0,
            "pitch_shift": "f0", "speed": 1.0, "voice_weights": {"af_heart": 1.0}}
    meta.update(changes)
    return meta


def kokoro_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"style": rng.normal(0, 0.1, STYLE_SHAPE).astype(np.float32),
            "prompt_embedding": rng.normal(0, 0.1, 256).astype(np.float32)}


def features_bytes(meta: dict[str, Any] | None = None, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    return Features(meta=kokoro_meta() if meta is None else meta,
                    arrays=kokoro_arrays() if arrays is None else arrays).to_bytes()


def raw_npz(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    """An .npz written member by member, so a test can put anything in it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def meta_npy(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return npy(np.frombuffer(raw, dtype=np.uint8))


def entry(prompt_id: str, n: int, features: bytes, /, **changes: Any) -> dict[str, Any]:
    value = {"prompt_id": prompt_id, "prompt_text": "今天天气很好。", "features": f"features/{n}.npz",
             "features_sha256": sha256_hex(features), "prompt_audio": None, "prompt_audio_sha256": None,
             "prompt_container": "wav", "prompt_sample_rate": 24000, "prompt_seconds": 2.5,
             "metrics": {"similarity": 0.8, "voice_weights": {"af_heart": 1.0}}}
    value.update(changes)
    return value


def bundle(entries: list[dict[str, Any]], members: dict[str, bytes], *, manifest_text: str | None = None,
           compression: int = zipfile.ZIP_STORED, **manifest_changes: Any) -> bytes:
    engine = get_engine()
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "engine": engine.name,
                "feature_version": engine.feature_version, "sample_rate": engine.sample_rate,
                "created_at": "2026-01-01T00:00:00+00:00", "voices": entries, **manifest_changes}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("manifest.json", manifest_text if manifest_text is not None else json.dumps(manifest))
    return buf.getvalue()


def one_voice(features: bytes | None = None, **changes: Any) -> bytes:
    blob = features_bytes() if features is None else features
    return bundle([entry("v", 0, blob, **changes)], {"features/0.npz": blob})


def refused(data: bytes, status: int = 400, match: str = "") -> ApiError:
    with pytest.raises(ApiError) as info:
        read_bundle(data, [])
    assert info.value.status == status, info.value.message
    assert match in info.value.message, info.value.message
    assert info.value.as_json()["error"] is True
    return info.value


# --- what a valid bundle is ----------------------------------------------------------


def test_a_valid_hand_made_bundle_reads() -> None:
    audio = b"RIFF" + bytes(100)
    blob = features_bytes()
    data = bundle([entry("v", 0, blob, prompt_audio="prompts/0.bin", prompt_audio_sha256=sha256_hex(audio))],
                  {"features/0.npz": blob, "prompts/0.bin": audio})
    [voice] = read_bundle(data, [])
    assert voice.prompt_id == "v" and voice.features == blob and voice.prompt_audio == audio
    assert voice.entry.prompt_seconds == 2.5 and voice.entry.metrics["similarity"] == 0.8


def test_compressed_bundles_within_reason_still_read() -> None:
    blob = features_bytes()
    data = bundle([entry("v", 0, blob)], {"features/0.npz": blob}, compression=zipfile.ZIP_DEFLATED)
    assert [v.prompt_id for v in read_bundle(data, [])] == ["v"]


# --- features against the engine's schema (item 9) ----------------------------------


@pytest.mark.parametrize("arrays, match", [
    ({"style": np.zeros((10, 256), np.float32)}, "'style' must be float32"),
    ({"style": np.zeros(STYLE_SHAPE, np.float64)}, "'style' must be float32"),
    ({}, "'style' must be float32"),
    ({"style": np.full(STYLE_SHAPE, np.nan, np.float32)}, "NaN"),
    ({"style": np.full(STYLE_SHAPE, np.inf, np.float32)}, "NaN"),
    ({"style": np.zeros(STYLE_SHAPE, np.float32), "prompt_embedding": np.zeros(12, np.float32)}, "prompt_embedding"),
    ({"style": np.zeros(STYLE_SHAPE, np.float32), "junk": np.zeros(3, np.float32)}, "does not know"),
])
def test_features_of_the_wrong_shape_or_not_finite_are_refused(arrays: dict[str, np.ndarray], match: str) -> None:
    refused(one_voice(features_bytes(arrays=arrays)), 400, match)


@pytest.mark.parametrize("changes, match", [
    ({"speed": float("nan")}, "not finite"),
    ({"speed": 9.0}, "'speed'"),
    ({"pitch_factor": 50.0}, "'pitch_factor'"),
    ({"gain": "loud"}, "'gain'"),
    ({"engine": "cosyvoice2"}, "features are for"),
    ({"transcript_language": "klingon"}, "transcript_language"),
])
def test_feature_values_out_of_range_are_refused(changes: dict[str, Any], match: str) -> None:
    refused(one_voice(features_bytes(meta=kokoro_meta(**changes))), 400, match)


def test_features_that_are_not_an_npz_or_use_pickle_are_refused() -> None:
    refused(one_voice(b"\x80\x04\x95 pickle"), 400, "not an .npz")
    pickled = raw_npz({"style.npy": npy(np.array([{"a": 1}], dtype=object)), "__meta__.npy": meta_npy("{}")})
    refused(one_voice(pickled), 400, "plain numbers")


# --- manifest fields, held to /clone's rules (item 9) --------------------------------


@pytest.mark.parametrize("changes, match", [
    ({"prompt_text": "好" * (5 * MB // 3)}, "at most 1000 characters"),
    ({"prompt_text": "x" * 1001}, "at most 1000 characters"),
    ({"prompt_text": "   "}, "must not be empty"),
    ({"prompt_text": 7}, "must be a string"),
    ({"prompt_id": "a\x00b"}, "control characters"),
    ({"prompt_id": "x" * 129}, "at most 128"),
    ({"prompt_seconds": float("inf")}, "prompt_seconds"),
    ({"prompt_seconds": -1}, "prompt_seconds"),
    ({"prompt_sample_rate": 10**12}, "prompt_sample_rate"),
    ({"prompt_sample_rate": True}, "prompt_sample_rate"),
    ({"prompt_container": "c" * 33}, "prompt_container"),
    ({"metrics": {"similarity": float("nan")}}, "not finite"),
    ({"metrics": {"blob": "x" * (65 * 1024)}}, "metrics are"),
    ({"metrics": [1, 2]}, "metrics must be an object"),
    ({"features_sha256": "ZZ"}, "features_sha256"),
    ({"prompt_audio": "prompts/0.bin", "prompt_audio_sha256": None}, "prompt_audio_sha256"),
])
def test_manifest_fields_are_checked(changes: dict[str, Any], match: str) -> None:
    refused(one_voice(**changes), 400, match)


def test_one_bad_voice_refuses_the_whole_bundle() -> None:
    good, bad = features_bytes(), features_bytes(arrays={"style": np.zeros((1, 1), np.float32)})
    data = bundle([entry("good", 0, good), entry("bad", 1, bad)], {"features/0.npz": good, "features/1.npz": bad})
    refused(data, 400, "'bad'")
    blob = features_bytes()
    twice = bundle([entry("v", 0, blob), entry("v", 0, blob)], {"features/0.npz": blob})
    refused(twice, 400, "twice")


def test_voices_cannot_share_a_member() -> None:
    """Else one member, declared once, is read once per voice naming it (10000 x 8 MB)."""
    blob = features_bytes()
    shared = bundle([entry(f"v{i}", 0, blob) for i in range(3)], {"features/0.npz": blob})
    refused(shared, 400, "belongs to 'v0'")
    refused(bundle([entry("v", 0, blob, features="manifest.json")], {}), 400, "belongs to")


# --- deep JSON (item 7, bundle part) ------------------------------------------------


def test_deeply_nested_json_in_the_manifest_is_a_400() -> None:
    refused(bundle([], {}, manifest_text=DEEP), 400, "nests deeper")
    blob = features_bytes()
    text = json.dumps({"format": FORMAT_NAME, "voices": [entry("v", 0, blob)]})
    deep_in_a_voice = text.replace('"metrics": {', f'"x": {DEEP}, "metrics": {{')
    refused(bundle([], {"features/0.npz": blob}, manifest_text=deep_in_a_voice), 400, "nests deeper")


def test_deeply_nested_json_in_npz_metadata_is_a_400() -> None:
    blob = raw_npz({"style.npy": npy(kokoro_arrays()["style"]), "__meta__.npy": meta_npy(DEEP)})
    refused(one_voice(blob), 400, "nests deeper")
    with pytest.raises(ValueError, match="nests deeper"):  # the feature store's read path too
        Features.from_bytes(blob)


# --- sizes and zip bombs (item 9) ---------------------------------------------------


def _bomb(size: int, member: str = "features/0.npz") -> bytes:
    """A bundle whose one voice's features member is ``size`` zero bytes, deflated (about 1000:1)."""
    engine = get_engine()
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "engine": engine.name,
                "feature_version": engine.feature_version, "voices": [entry("v", 0, b"", features=member)]}
    buf = io.BytesIO()
    chunk = bytes(MB)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        with zf.open(member, "w", force_zip64=True) as out:
            for _ in range(size // MB):
                out.write(chunk)
    return buf.getvalue()


def _peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
    except (ApiError, ValueError):
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_zip_bomb_is_refused_from_its_declared_sizes_with_memory_bounded() -> None:
    data = _bomb(100 * MB)
    assert len(data) < MB
    error = refused(data, 413, "expands to")
    assert isinstance(error, PayloadTooLarge)
    peak = _peak_bytes(lambda: read_bundle(data, []))
    assert peak < 8 * MB, f"reading a {len(data)}-byte bomb took {peak} bytes"


def test_a_member_over_its_cap_is_refused_before_it_is_read() -> None:
    big = bytes(MAX_FEATURE_BYTES + 1)  # stored, sizes honest: the bundle is as big as it claims
    data = bundle([entry("v", 0, big)], {"features/0.npz": big})
    refused(data, 413, "over the")
    peak = _peak_bytes(lambda: read_bundle(data, []))
    assert peak < 4 * MB, peak


def test_a_zip_bomb_inside_the_features_npz_is_refused_with_memory_bounded() -> None:
    style = np.zeros((64 * MB // 4,), np.float32)  # 64 MB of zeros, deflated inside the npz
    blob = raw_npz({"style.npy": npy(style), "__meta__.npy": meta_npy(json.dumps(kokoro_meta()))},
                   zipfile.ZIP_DEFLATED)
    del style
    assert len(blob) < MB
    peak = _peak_bytes(lambda: Features.from_bytes(blob))
    with pytest.raises(ValueError, match="expand"):
        Features.from_bytes(blob)
    assert peak < 4 * MB, peak
    refused(one_voice(blob), 400, "expand")


def test_an_npy_header_that_lies_about_its_size_is_refused_before_allocating() -> None:
    buf = io.BytesIO()  # a header declaring a billion floats, followed by 16 bytes
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**9,)})
    lying = buf.getvalue() + bytes(16)
    blob = raw_npz({"style.npy": lying, "__meta__.npy": meta_npy(json.dumps(kokoro_meta()))})
    peak = _peak_bytes(lambda: Features.from_bytes(blob))
    with pytest.raises(ValueError, match="holds 16 bytes"):
        Features.from_bytes(blob)
    assert peak < 4 * MB, peak
    refused(one_voice(blob), 400, "holds 16 bytes")


@pytest.mark.parametrize("members, match", [
    ({f"a{i}.npy": npy(np.zeros(1, np.float32)) for i in range(40)}, "more than"),
    ({"style.npy": npy(np.zeros(2, np.float32))}, "no metadata"),
    ({"../x.npy": npy(np.zeros(2, np.float32)), "__meta__.npy": meta_npy("{}")}, "unexpected member"),
    ({"s.npy": npy(np.array(["text"])), "__meta__.npy": meta_npy("{}")}, "plain numbers"),
    ({"s.npy": npy(np.zeros((1,) * 5, np.float32)), "__meta__.npy": meta_npy("{}")}, "dimensions"),
    ({"__meta__.npy": meta_npy("[1]")}, "not an object"),
    ({"__meta__.npy": meta_npy('{"x": NaN}')}, "not finite"),
    ({"__meta__.npy": meta_npy('{"x": "' + "y" * 300 * 1024 + '"}')}, "metadata is"),
    ({"__meta__.npy": meta_npy(b'{"x": "\xff"}')}, "not valid JSON"),
])
def test_feature_blobs_are_checked_on_every_read(members: dict[str, bytes], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Features.from_bytes(raw_npz(members))


def test_features_round_trip_and_stay_writable() -> None:
    meta, arrays = kokoro_meta(), kokoro_arrays()
    again = Features.from_bytes(Features(meta, arrays).to_bytes())
    assert again.meta == meta and set(again.arrays) == set(arrays)
    np.testing.assert_array_equal(again.arrays["style"], arrays["style"])
    again.arrays["style"][0, 0] = 1.0  # np.load gave writable arrays; engines may rely on it
    get_engine().check_features(again)
