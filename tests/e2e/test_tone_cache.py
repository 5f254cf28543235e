"""/cache/save and /cache/load end to end: round trip into a fresh server, and bad bundles."""
from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from synthesis.engines.base import Features
from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import stream_tts
from tests.server import RunningServer, start_server
from voices.feature_store import sha256_hex


def _clone(server: RunningServer, prompt_id: str, wav: bytes, text: str) -> None:
    body = {"prompt_audio": base64.b64encode(wav).decode(), "prompt_text": text, "prompt_id": prompt_id}
    r = httpx.post(f"{server.http}/clone", json=body, timeout=120)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def saved_bundle(server: RunningServer, prompt_wavs: dict[str, bytes], tmp_path_factory) -> Path:
    _clone(server, "cache-a", prompt_wavs["jf_alpha"], PROMPT_TEXTS["jf_alpha"])
    _clone(server, "cache-b", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"])
    cache_dir = tmp_path_factory.mktemp("tone-cache") / "nested" / "dir"
    r = httpx.post(f"{server.http}/cache/save", json={"cache_dir": str(cache_dir), "prompt_ids": ["cache-a", "cache-b"]})
    assert r.status_code == 200, r.text
    path = Path(r.json()["cache_path"])
    assert path.is_file() and path.parent == cache_dir
    return path


def test_bundle_is_self_describing(saved_bundle: Path) -> None:
    with zipfile.ZipFile(saved_bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["format_version"] == 1
        assert manifest["engine"] == "kokoro" and manifest["feature_version"]
        assert manifest["sample_rate"] == 24000
        ids = [v["prompt_id"] for v in manifest["voices"]]
        assert ids == ["cache-a", "cache-b"]
        for v in manifest["voices"]:
            assert v["prompt_text"] and len(v["features_sha256"]) == 64
            assert zf.read(v["features"])[:2] == b"PK"  # npz, never a pickle


def test_fresh_server_loads_bundle_and_speaks(saved_bundle: Path, tmp_path_factory) -> None:
    fresh = start_server(tmp_path_factory.mktemp("fresh-server"))
    try:
        assert httpx.get(f"{fresh.http}/speakers").json() == []
        r = httpx.post(f"{fresh.http}/cache/load", json={"cache_path": str(saved_bundle), "prompt_ids": ["cache-b"]})
        assert r.status_code == 200, r.text
        assert r.json() == {"loaded_speakers": ["cache-b"]}
        assert httpx.get(f"{fresh.http}/speakers").json() == ["cache-b"]
        # the directory it was saved in works as cache_path too, and [] means all
        r = httpx.post(f"{fresh.http}/cache/load", json={"cache_path": str(saved_bundle.parent), "prompt_ids": []})
        assert sorted(r.json()["loaded_speakers"]) == ["cache-a", "cache-b"]
        result = stream_tts(fresh.ws, {"prompt_id": "cache-a", "audio_format": "wav"}, ["你好，世界。"])
        assert not result.errors and result.end is not None and result.audio
    finally:
        fresh.stop()


def test_save_unknown_id_writes_nothing(server: RunningServer, tmp_path: Path) -> None:
    r = httpx.post(f"{server.http}/cache/save", json={"cache_dir": str(tmp_path / "c"), "prompt_ids": ["nope"]})
    assert r.status_code == 404 and r.json()["error"] is True
    assert not (tmp_path / "c" / "tone_cache.ttsc").exists()


def _load(server: RunningServer, path: Path, ids: list[str] | None = None) -> httpx.Response:
    return httpx.post(f"{server.http}/cache/load", json={"cache_path": str(path), "prompt_ids": ids or []})


def _rewrite(src: Path, dst: Path, mutate) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        manifest = json.loads(zin.read("manifest.json"))
        members = {n: zin.read(n) for n in zin.namelist() if n != "manifest.json"}
        manifest, members = mutate(manifest, members)
        for name, data in members.items():
            zout.writestr(name, data)
        zout.writestr("manifest.json", json.dumps(manifest))
    return dst


def test_bad_bundles_load_nothing(server: RunningServer, saved_bundle: Path, tmp_path: Path) -> None:
    before = sorted(httpx.get(f"{server.http}/speakers").json())
    data = saved_bundle.read_bytes()
    truncated = tmp_path / "truncated.ttsc"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.ttsc"
    garbage.write_bytes(b"\x80\x04\x95 not a bundle, maybe a pickle")

    def other_engine(m, members):
        m["engine"] = "cosyvoice2"
        return m, members

    def flipped_byte(m, members):
        name = m["voices"][1]["features"]
        blob = bytearray(members[name])
        blob[len(blob) // 2] ^= 0xFF
        members[name] = bytes(blob)
        return m, members

    cases = [
        (truncated, None, 400),
        (garbage, None, 400),
        (_rewrite(saved_bundle, tmp_path / "engine.ttsc", other_engine), None, 400),
        (_rewrite(saved_bundle, tmp_path / "flip.ttsc", flipped_byte), None, 400),
        (saved_bundle, ["cache-a", "missing-id"], 404),
        (tmp_path / "does-not-exist.ttsc", None, 404),
    ]
    for path, ids, status in cases:
        r = _load(server, path, ids)
        assert r.status_code == status, (path.name, r.status_code, r.text)
        assert r.json()["error"] is True and r.json()["message"]
    assert sorted(httpx.get(f"{server.http}/speakers").json()) == before


# --- hand-made bundles (issue 17, items 7 and 9) ---------------------------------------

DEEP = "[" * 100000 + "]" * 100000
MB = 1024 * 1024


def _hand_made(src: Path, dst: Path, *, voice: dict | None = None, arrays=None, meta=None,
               manifest_extra: dict | None = None, raw_meta: bytes | None = None) -> Path:
    """``src`` re-written as a user might by hand: voice 0 renamed to hand-made (so a load that
    wrongly succeeds shows), its entry fields, feature arrays or metadata changed, checksums right."""
    def mutate(m, members):
        entry = m["voices"][0]
        m["voices"] = [entry]
        entry["prompt_id"] = "hand-made"
        entry.update(voice or {})
        m.update(manifest_extra or {})
        if arrays is not None or meta is not None or raw_meta is not None:
            features = Features.from_bytes(members[entry["features"]])
            if arrays is not None:
                features.arrays.update(arrays)
            if meta is not None:
                features.meta.update(meta)
            blob = features.to_bytes()
            if raw_meta is not None:  # metadata no Features object can hold
                blob = _npz({**{f"{k}.npy": _npy(v) for k, v in features.arrays.items()},
                             "__meta__.npy": _npy(np.frombuffer(raw_meta, np.uint8))})
            members[entry["features"]] = blob
            entry["features_sha256"] = sha256_hex(blob)
        return m, members

    return _rewrite(src, dst, mutate)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _npz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_hand_made_bundles_with_bad_fields_load_nothing(server: RunningServer, saved_bundle: Path,
                                                        tmp_path: Path) -> None:
    """Each of these loaded with 200 (every later stream then failed with 4500, or GET /voices
    returned 5 MB) or answered 500 (deep JSON); each is refused whole with a 400 now."""
    before = sorted(httpx.get(f"{server.http}/speakers").json())
    cases = {
        "short-style": {"arrays": {"style": np.zeros((10, 256), np.float32)}},
        "nan-style": {"arrays": {"style": np.full((510, 256), np.nan, np.float32)}},
        "bad-speed": {"meta": {"speed": 40.0}},
        "big-text": {"voice": {"prompt_text": "很" * (5 * MB // 3)}},
        "nan-metrics": {"voice": {"metrics": {"similarity": float("nan")}}},
        "deep-manifest": {"manifest_extra": {"extra": "@DEEP@"}},
        "deep-npz-meta": {"raw_meta": ('{"engine": "kokoro", "x": ' + DEEP + "}").encode()},
    }
    for name, change in cases.items():
        path = _hand_made(saved_bundle, tmp_path / f"{name}.ttsc", **change)
        if name == "deep-manifest":  # json.dumps cannot write it that deep: splice the text in
            with zipfile.ZipFile(path) as zf:
                members = {n: zf.read(n) for n in zf.namelist()}
            members["manifest.json"] = members["manifest.json"].replace(b'"@DEEP@"', DEEP.encode())
            path.write_bytes(_npz(members))
        r = _load(server, path)
        assert r.status_code == 400, (name, r.status_code, r.text[:300])
        assert r.json()["error"] is True and r.json()["message"], name
        assert len(r.content) < 2000, (name, len(r.content))  # the message does not echo the field
        assert httpx.get(f"{server.http}/voices/hand-made").status_code == 404, name
    assert sorted(httpx.get(f"{server.http}/speakers").json()) == before
    assert httpx.get(f"{server.http}/health").status_code == 200


def _vm(pid: int, field: str) -> int:
    """A process's VmRSS / VmHWM in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """A 0.5 MB bundle whose one voice's features expand to 480 MB of zeros (under TTS_CACHE_MAX_BYTES,
    so only the new checks stop it)."""
    path = tmp_path_factory.mktemp("bomb") / "tone_cache.ttsc"
    manifest = {"format": "ttsplatform-tone-cache", "format_version": 1, "engine": "kokoro",
                "feature_version": "kokoro-1",
                "voices": [{"prompt_id": "bomb", "prompt_text": "boom", "features": "features/0.npz",
                            "features_sha256": "0" * 64}]}
    chunk = bytes(MB)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        with zf.open("features/0.npz", "w", force_zip64=True) as out:
            for _ in range(480):
                out.write(chunk)
    return path


def test_a_zip_bomb_is_refused_while_server_memory_stays_bounded(server: RunningServer, zip_bomb: Path) -> None:
    pid = server.process.pid
    try:  # reset the peak (VmHWM) to the current RSS, so the peak below is this request's
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass
    rss_before, peak_before = _vm(pid, "VmRSS"), _vm(pid, "VmHWM")
    r = _load(server, zip_bomb)
    peak_after, rss_after = _vm(pid, "VmHWM"), _vm(pid, "VmRSS")
    print(f"\n[{server.mode}] zip bomb of {zip_bomb.stat().st_size} bytes: HTTP {r.status_code}; server RSS "
          f"{rss_before / MB:.0f} -> {rss_after / MB:.0f} MB, peak {peak_before / MB:.0f} -> {peak_after / MB:.0f} MB")
    assert r.status_code == 413 and r.json()["error"] is True, r.text
    assert "expands to" in r.json()["message"]
    assert peak_after - max(rss_before, peak_before) < 64 * MB
    assert httpx.get(f"{server.http}/voices/bomb").status_code == 404
