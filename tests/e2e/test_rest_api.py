"""REST endpoints end to end, over real sockets, with the wire format of the original API."""
from __future__ import annotations

import base64
import io
import json
import wave

import httpx
import numpy as np
import pytest

from tests.e2e.conftest import PROMPT_TEXTS
from tests.server import RunningServer


def _clone(server: RunningServer, prompt_id: str, audio: str, text: str = PROMPT_TEXTS["jf_alpha"], **extra) -> httpx.Response:
    body = {"prompt_audio": audio, "prompt_text": text, "prompt_id": prompt_id, **extra}
    return httpx.post(f"{server.http}/clone", json=body, timeout=120)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_clone_list_remove_round_trip(server: RunningServer, prompt_wavs: dict[str, bytes]) -> None:
    r = _clone(server, "rest-alpha", _b64(prompt_wavs["jf_alpha"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"existed": False, "prompt_id": "rest-alpha"}

    again = _clone(server, "rest-alpha", _b64(prompt_wavs["jm_kumo"]))
    assert again.json() == {"existed": True, "prompt_id": "rest-alpha"}

    listed = httpx.get(f"{server.http}/speakers").json()
    assert isinstance(listed, list) and "rest-alpha" in listed

    removed = httpx.post(f"{server.http}/remove", json={"prompt_id": "rest-alpha"})
    assert removed.status_code == 200 and removed.json() == {"status": "ok"}
    assert "rest-alpha" not in httpx.get(f"{server.http}/speakers").json()

    gone = httpx.post(f"{server.http}/remove", json={"prompt_id": "rest-alpha"})
    assert gone.status_code == 404
    assert gone.json()["error"] is True and "rest-alpha" in gone.json()["message"]


def test_clone_accepts_data_uri_and_raw_pcm(server: RunningServer, prompt_wavs: dict[str, bytes]) -> None:
    uri = "data:audio/wav;base64," + _b64(prompt_wavs["jm_kumo"])
    r = _clone(server, "rest-data-uri", uri, PROMPT_TEXTS["jm_kumo"])
    assert r.status_code == 200, r.text
    with wave.open(io.BytesIO(prompt_wavs["jm_kumo"])) as w:
        pcm, rate = w.readframes(w.getnframes()), w.getframerate()
    r = _clone(server, "rest-raw-pcm", _b64(pcm), PROMPT_TEXTS["jm_kumo"], sample_rate=rate)
    assert r.status_code == 200, r.text
    assert {"rest-data-uri", "rest-raw-pcm"} <= set(httpx.get(f"{server.http}/speakers").json())


def test_clone_from_a_local_path(server: RunningServer, prompt_wavs: dict[str, bytes], tmp_path) -> None:
    path = tmp_path / "prompt.bin"  # no telling extension: recognised by content
    path.write_bytes(prompt_wavs["jm_kumo"])
    r = _clone(server, "rest-path", str(path), PROMPT_TEXTS["jm_kumo"])
    assert r.status_code == 200, r.text


def test_clone_refuses_loopback_urls_by_default(server: RunningServer) -> None:
    r = _clone(server, "rest-url", f"{server.http}/speakers")
    assert r.status_code in (400, 403)
    assert r.json()["error"] is True


def test_health_and_openapi(server: RunningServer) -> None:
    health = httpx.get(f"{server.http}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["mode"] == server.mode
    if server.mode == "embedded":
        assert health.json()["warm"] is True  # the engine is in this process
    else:
        assert health.json()["workers"] >= 1 and health.json()["redis"] is True
    doc = httpx.get(f"{server.http}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for route in ["/speakers", "/remove", "/clone", "/cache/save", "/cache/load", "/health"]:
        assert route in doc["paths"]


BAD_CLONES = [
    ({}, 400),
    ({"prompt_id": "x", "prompt_text": "hi"}, 400),
    ({"prompt_id": "x", "prompt_text": "", "prompt_audio": "AAAA"}, 400),
    ({"prompt_id": "", "prompt_text": "hi", "prompt_audio": "AAAA"}, 400),
    ({"prompt_id": 5, "prompt_text": "hi", "prompt_audio": "AAAA"}, 400),
    ({"prompt_id": "x", "prompt_text": "hi", "prompt_audio": "not base64 at all!!"}, 400),
    ({"prompt_id": "x", "prompt_text": "hi", "prompt_audio": _b64(b"\x00\x01" * 8000)}, 400),  # 0.5 s of near-silence
    ({"prompt_id": "x", "prompt_text": "hi", "prompt_audio": _b64(np.zeros(48000, "<i2").tobytes())}, 400),  # silence
    ({"prompt_id": "x", "prompt_text": "hi", "prompt_audio": "/nonexistent/prompt.wav"}, 404),
    ({"prompt_id": "x", "prompt_text": "hi", "prompt_audio": "/etc"}, 400),
    ({"prompt_id": "x", "prompt_text": "hi", "prompt_audio": "file:///etc/passwd"}, 400),
    ({"prompt_id": "x", "prompt_text": "hi", "prompt_audio": "AAAA", "sample_rate": "fast"}, 400),
]


@pytest.mark.parametrize("body,status", BAD_CLONES)
def test_bad_clone_requests_get_a_clear_json_error(server: RunningServer, body: dict, status: int) -> None:
    r = httpx.post(f"{server.http}/clone", json=body, timeout=60)
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["error"] is True and payload["message"]
    assert "x" not in httpx.get(f"{server.http}/speakers").json()


def test_a_lone_surrogate_in_a_clone_is_refused(server: RunningServer, prompt_wavs: dict[str, bytes]) -> None:
    """Valid JSON (json.dumps escapes it), not Unicode text: nothing could store it."""
    body = {"prompt_id": "lone-surrogate", "prompt_text": "Hello \ud800 there.",
            "prompt_audio": _b64(prompt_wavs["jf_alpha"])}
    r = httpx.post(f"{server.http}/clone", content=json.dumps(body).encode("ascii"),
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 400 and "surrogate" in r.json()["message"], r.text
    assert "lone-surrogate" not in httpx.get(f"{server.http}/speakers").json()


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/clone", b"{not json"),
        ("POST", "/clone", b"[1, 2]"),
        ("POST", "/remove", b""),
        ("POST", "/remove", b'{"prompt_id": null}'),
        ("POST", "/cache/save", b'{"prompt_ids": "abc"}'),
        ("POST", "/cache/load", b"{}"),
        ("GET", "/clone", None),
        ("POST", "/speakers", b"{}"),
        ("GET", "/no/such/endpoint", None),
    ],
)
def test_malformed_requests_never_500(server: RunningServer, method: str, path: str, body: bytes | None) -> None:
    r = httpx.request(method, f"{server.http}{path}", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["error"] is True
    assert httpx.get(f"{server.http}/health").status_code == 200


def test_oversized_body_is_refused(server: RunningServer) -> None:
    huge = "A" * (30 * 1024 * 1024)
    r = httpx.post(f"{server.http}/clone", json={"prompt_id": "big", "prompt_text": "hi", "prompt_audio": huge}, timeout=60)
    assert r.status_code == 413
    assert r.json()["error"] is True


def test_admin_is_served_with_its_static_files(server: RunningServer) -> None:
    login = httpx.get(f"{server.http}/admin/login/")
    assert login.status_code == 200 and "TTS platform admin" in login.text
    css = httpx.get(f"{server.http}/static/admin/css/base.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


def test_a_transcript_far_longer_than_the_prompt_is_refused(server: RunningServer, prompt_wavs) -> None:
    r = _clone(server, "long-text", _b64(prompt_wavs["jf_alpha"]), PROMPT_TEXTS["jf_alpha"] * 30)
    assert r.status_code == 400 and "transcript" in r.json()["message"]
    assert "long-text" not in httpx.get(f"{server.http}/speakers").json()


def test_clone_refuses_noise_and_a_truncated_wav(server: RunningServer, prompt_wavs: dict[str, bytes]) -> None:
    """Not speech, or cut off in transfer: a 400 that says so, and no voice (issue 17, item 11)."""
    rng = np.random.default_rng(17)
    white = (rng.standard_normal(24000 * 3) * 0.1).astype(np.float32)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes((white * 32767).astype("<i2").tobytes())
    full = prompt_wavs["jm_kumo"]
    cases = [
        ("noise-wav", _b64(buf.getvalue()), "does not sound like speech"),
        ("noise-pcm", _b64(rng.bytes(64000)), "does not sound like speech"),
        ("half-wav", _b64(full[: len(full) // 2]), "truncated"),
    ]
    for prompt_id, audio, reason in cases:
        r = _clone(server, prompt_id, audio, PROMPT_TEXTS["jm_kumo"])
        assert r.status_code == 400, r.text
        assert r.json()["error"] is True and reason in r.json()["message"], r.text
    assert not {"noise-wav", "noise-pcm", "half-wav"} & set(httpx.get(f"{server.http}/speakers").json())
