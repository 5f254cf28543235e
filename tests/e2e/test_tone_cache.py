"""/cache/save and /cache/load end to end: round trip into a fresh server, and bad bundles."""
from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import stream_tts
from tests.server import RunningServer, start_server


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
