"""/cache/save and /cache/load with s3:// locations, over HTTP, against a real S3 server."""
from __future__ import annotations

import base64
import io
import json
import uuid
import zipfile

import httpx
import pytest

from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import stream_tts
from tests.s3server import S3Server
from tests.server import RunningServer

VOICE = "s3-cache-voice"


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    name = f"tone-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture(scope="module")
def cloned(server: RunningServer, prompt_wavs: dict[str, bytes]) -> str:
    body = {"prompt_audio": base64.b64encode(prompt_wavs["jm_kumo"]).decode(),
            "prompt_text": PROMPT_TEXTS["jm_kumo"], "prompt_id": VOICE}
    r = httpx.post(f"{server.http}/clone", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return VOICE


def _save(server: RunningServer, cache_dir: str, ids: list[str]) -> httpx.Response:
    return httpx.post(f"{server.http}/cache/save", json={"cache_dir": cache_dir, "prompt_ids": ids}, timeout=60)


def _load(server: RunningServer, cache_path: str, ids: list[str] | None = None) -> httpx.Response:
    return httpx.post(f"{server.http}/cache/load", json={"cache_path": cache_path, "prompt_ids": ids or []}, timeout=60)


def _speakers(server: RunningServer) -> list[str]:
    return sorted(httpx.get(f"{server.http}/speakers").json())


def _assert_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] is True and isinstance(body["message"], str) and body["message"]


def _object(s3_server: S3Server, bucket: str, key: str) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def test_save_remove_load_and_speak(server: RunningServer, s3_server: S3Server, bucket: str, cloned: str) -> None:
    r = _save(server, f"s3://{bucket}/some/prefix", [cloned])
    assert r.status_code == 200, r.text
    assert r.json() == {"cache_path": f"s3://{bucket}/some/prefix/tone_cache.ttsc"}
    with zipfile.ZipFile(io.BytesIO(_object(s3_server, bucket, "some/prefix/tone_cache.ttsc"))) as zf:
        assert [v["prompt_id"] for v in json.loads(zf.read("manifest.json"))["voices"]] == [cloned]

    assert httpx.post(f"{server.http}/remove", json={"prompt_id": cloned}).status_code == 200
    assert cloned not in _speakers(server)

    r = _load(server, f"s3://{bucket}/some/prefix")  # the prefix it was saved under
    assert r.status_code == 200, r.text
    assert r.json() == {"loaded_speakers": [cloned]}
    assert cloned in _speakers(server)
    result = stream_tts(server.ws, {"prompt_id": cloned, "audio_format": "wav"}, ["Hello from the bucket."])
    assert not result.errors and result.end is not None and result.audio

    r = _load(server, f"s3://{bucket}/some/prefix/tone_cache.ttsc", [cloned])  # the object itself
    assert r.status_code == 200 and r.json() == {"loaded_speakers": [cloned]}, r.text


def test_missing_bucket_is_404(server: RunningServer, cloned: str) -> None:
    missing = f"s3://no-such-{uuid.uuid4().hex[:12]}/p"
    _assert_error(_save(server, missing, [cloned]), 404)
    _assert_error(_load(server, missing), 404)


def test_missing_object_is_404(server: RunningServer, bucket: str) -> None:
    _assert_error(_load(server, f"s3://{bucket}/never/saved"), 404)


def test_save_of_unknown_voice_writes_nothing(server: RunningServer, s3_server: S3Server, bucket: str) -> None:
    _assert_error(_save(server, f"s3://{bucket}/unknown", ["no-such-voice"]), 404)
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="unknown/")
    assert listed.get("KeyCount", 0) == 0


def test_corrupt_objects_load_nothing(server: RunningServer, s3_server: S3Server, bucket: str, cloned: str) -> None:
    r = _save(server, f"s3://{bucket}/good", [cloned])
    assert r.status_code == 200, r.text
    good = _object(s3_server, bucket, "good/tone_cache.ttsc")
    bad = {"garbage": b"\x80\x04\x95 not a bundle, maybe a pickle", "truncated": good[: len(good) // 2],
           "flipped": _with_flipped_features(good)}
    before = _speakers(server)
    for name, data in bad.items():
        s3_server.client().put_object(Bucket=bucket, Key=f"corrupt-{name}/tone_cache.ttsc", Body=data)
        _assert_error(_load(server, f"s3://{bucket}/corrupt-{name}"), 400)
    assert _speakers(server) == before


def _with_flipped_features(bundle: bytes) -> bytes:
    """The bundle re-zipped (valid zip CRCs) with one byte of a voice's features flipped."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as zin, zipfile.ZipFile(out, "w") as zout:
        target = json.loads(zin.read("manifest.json"))["voices"][0]["features"]
        for name in zin.namelist():
            data = bytearray(zin.read(name))
            if name == target:
                data[len(data) // 2] ^= 0xFF
            zout.writestr(name, bytes(data))
    return out.getvalue()


@pytest.mark.parametrize(
    "location",
    ["s3://", "s3://ab/x", "s3://Upper-Case/x", "s3://bucket/../escape", "s3://bucket/a//b", "s3://bucket/a?x=1",
     "s3://user:secret@bucket/x", "gs://bucket/x"],
)
def test_malformed_locations_are_400(server: RunningServer, cloned: str, location: str) -> None:
    _assert_error(_save(server, location, [cloned]), 400)
    _assert_error(_load(server, location), 400)
