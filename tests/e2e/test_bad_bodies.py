"""Bodies built to break a JSON parser, or to slip past the text checks, on every REST endpoint:
each gets a 400 JSON error before any work is done, and the server keeps serving."""
from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.e2e.conftest import PROMPT_TEXTS
from tests.server import RunningServer

POST_ROUTES = ["/clone", "/remove", "/cache/save", "/cache/load"]
DEEP = [b"[" * 100000 + b"]" * 100000, b'{"prompt_id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"a":' * 20000 + b"1" + b"}" * 20000]


@pytest.mark.parametrize("route", POST_ROUTES)
def test_deeply_nested_json_is_a_400(server: RunningServer, route: str) -> None:
    for body in DEEP:
        response = httpx.post(f"{server.http}{route}", content=body, timeout=30,
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["error"] is True and "deeper" in response.json()["message"]
    assert httpx.get(f"{server.http}/speakers", timeout=10).status_code == 200


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
@pytest.mark.parametrize("field, route", [("cache_dir", "/cache/save"), ("cache_path", "/cache/load"),
                                          ("prompt_audio", "/clone"), ("provenance_note", "/clone")])
def test_bodies_that_are_not_utf8_are_a_400(server: RunningServer, prompt_wavs, encoding: str, field: str,
                                            route: str) -> None:
    body = {"prompt_audio": base64.b64encode(prompt_wavs["jm_kumo"]).decode(), "prompt_text": PROMPT_TEXTS["jm_kumo"],
            "prompt_id": "utf16-voice", "cache_dir": "somewhere", "cache_path": "somewhere/x.ttsc",
            field: "/tmp/\ud800.wav" if field != "provenance_note" else "consent \ud800"}
    blobs_before = _blobs(server)
    raw = json.dumps(body, ensure_ascii=False).encode(encoding, "surrogatepass")
    response = httpx.post(f"{server.http}{route}", content=raw, timeout=60,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "UTF-8" in response.json()["message"], response.text
    assert _blobs(server) == blobs_before  # no clone ran: no orphan blobs
    assert "utf16-voice" not in httpx.get(f"{server.http}/speakers", timeout=10).json()


@pytest.mark.parametrize("field", ["prompt_text", "provenance_note", "prompt_id"])
def test_a_nul_in_a_text_field_is_refused_before_the_clone_runs(server: RunningServer, prompt_wavs,
                                                               field: str) -> None:
    body = {"prompt_audio": base64.b64encode(prompt_wavs["jm_kumo"]).decode(), "prompt_text": PROMPT_TEXTS["jm_kumo"],
            "prompt_id": "nul-voice"}
    body[field] = body.get(field, "consent") + "\x00"
    blobs_before = _blobs(server)
    response = httpx.post(f"{server.http}/clone", json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert _blobs(server) == blobs_before


def _blobs(server: RunningServer) -> set[str]:
    """The local feature store's files (embedded mode; distributed mode's store is S3)."""
    return {str(p) for p in (server.data_dir / "voices").rglob("*") if p.is_file()}
