"""Two tenants over real sockets, in both modes: API keys, isolation, scopes, quotas,
usage and the audit trail. Tenants are made with the operators' management commands."""
from __future__ import annotations

import base64
import io
import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.conftest import PROMPT_TEXTS
from tests.server import RunningServer

ZH = "你好，欢迎使用语音合成服务。"


@dataclass
class Tenant:
    slug: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_tenant(server: RunningServer, label: str) -> Tenant:
    slug = f"{label}-{uuid.uuid4().hex[:8]}"
    output = server.manage("create_tenant", f"Tenant {label}", "--slug", slug)
    key = output.strip().splitlines()[-1]
    assert key.startswith("tts_") and " " not in key, output
    return Tenant(slug, key)


def make_key(server: RunningServer, tenant: Tenant, *options: str) -> str:
    key = server.manage("create_api_key", tenant.slug, *options).strip().splitlines()[-1]
    assert key.startswith("tts_") and key != tenant.key
    return key


def clone(server: RunningServer, key: str | None, prompt_id: str, wav: bytes, text: str, **extra) -> httpx.Response:
    body = {"prompt_audio": base64.b64encode(wav).decode(), "prompt_text": text, "prompt_id": prompt_id, **extra}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{server.http}/clone", json=body, headers=headers, timeout=120)


def ws_stream(server: RunningServer, key: str | None, prompt_id: str, text: str = ZH, *, via_query: bool = False):
    """One request on a new connection: its messages, and the close code if the server closed."""
    url = server.ws
    headers = {}
    if key and via_query:
        url += f"?api_key={key}"
    elif key:
        headers = {"Authorization": f"Bearer {key}"}
    with connect(url, open_timeout=10, additional_headers=headers, max_size=None) as ws:
        return _request_on(ws, prompt_id, text, linger_after_end=0.5)


@pytest.fixture(scope="module")
def pair(server: RunningServer, prompt_wavs: dict[str, bytes]) -> Iterator[tuple[Tenant, Tenant]]:
    """Tenants A and B; A owns a voice called "alice"."""
    a, b = make_tenant(server, "a"), make_tenant(server, "b")
    response = clone(server, a.key, "alice", prompt_wavs["jf_alpha"], PROMPT_TEXTS["jf_alpha"],
                     provenance_note="recorded with consent, ticket 42")
    assert response.status_code == 200, response.text
    yield a, b


def test_each_tenant_sees_only_its_own_voices(server: RunningServer, pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    assert "alice" in httpx.get(f"{server.http}/speakers", headers=a.auth).json()
    assert "alice" not in httpx.get(f"{server.http}/speakers", headers=b.auth).json()
    assert "alice" not in httpx.get(f"{server.http}/speakers").json()  # open mode: the default tenant


def test_tenant_b_cannot_use_remove_or_save_tenant_a_voices(server: RunningServer, pair) -> None:
    a, b = pair
    mine = httpx.get(f"{server.http}/voices/alice", headers=a.auth)
    assert mine.status_code == 200 and mine.json()["state"] == "ready", mine.text
    assert mine.json()["provenance_note"] == "recorded with consent, ticket 42"
    assert 0.0 < mine.json()["similarity"] <= 1.0
    assert httpx.get(f"{server.http}/voices/alice", headers=b.auth).status_code == 404
    messages, code = ws_stream(server, b.key, "alice")
    assert messages[-1]["error"] is True and code == 4404
    assert httpx.post(f"{server.http}/remove", json={"prompt_id": "alice"}, headers=b.auth).status_code == 404
    saved = httpx.post(f"{server.http}/cache/save", json={"cache_dir": "b-cache", "prompt_ids": ["alice"]},
                       headers=b.auth)
    assert saved.status_code == 404, saved.text
    # A still has its voice, and it still speaks
    messages, _ = ws_stream(server, a.key, "alice")
    assert messages[-1].get("is_end") is True, messages[-1]


def test_the_same_prompt_id_in_two_tenants_is_two_voices(server: RunningServer, pair, prompt_wavs) -> None:
    a, b = pair
    response = clone(server, b.key, "alice", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"])
    assert response.status_code == 200 and response.json()["existed"] is False, response.text
    assert httpx.post(f"{server.http}/remove", json={"prompt_id": "alice"}, headers=b.auth).status_code == 200
    assert "alice" in httpx.get(f"{server.http}/speakers", headers=a.auth).json()


def test_tone_caches_stay_in_the_tenant_area(server: RunningServer, pair) -> None:
    a, b = pair
    saved = httpx.post(f"{server.http}/cache/save", json={"cache_dir": "mine", "prompt_ids": ["alice"]},
                       headers=a.auth)
    assert saved.status_code == 200, saved.text
    path = saved.json()["cache_path"]
    assert f"/{a.slug}/mine/" in path
    # B can neither read A's bundle nor write outside its own area
    stolen = httpx.post(f"{server.http}/cache/load", json={"cache_path": path, "prompt_ids": []}, headers=b.auth)
    assert stolen.status_code == 403, stolen.text
    escape = httpx.post(f"{server.http}/cache/save", json={"cache_dir": "../" + a.slug, "prompt_ids": []},
                        headers=b.auth)
    assert escape.status_code == 403, escape.text
    # A loads its own bundle back: into A only
    loaded = httpx.post(f"{server.http}/cache/load", json={"cache_path": "mine", "prompt_ids": []}, headers=a.auth)
    assert loaded.status_code == 200 and loaded.json()["loaded_speakers"] == ["alice"], loaded.text
    assert "alice" not in httpx.get(f"{server.http}/speakers", headers=b.auth).json()


def test_bad_revoked_and_expired_keys_are_refused(server: RunningServer, pair) -> None:
    a, _ = pair
    for key in ("tts_nope_" + "x" * 40, "garbage", a.key[:-2] + "zz"):
        response = httpx.get(f"{server.http}/speakers", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401 and response.json()["error"] is True
    messages, code = ws_stream(server, "tts_nope_" + "x" * 40, "alice")
    assert messages == [] or messages[-1]["error"] is True
    assert code == 4401

    revoked = make_key(server, a)
    assert httpx.get(f"{server.http}/speakers", headers={"Authorization": f"Bearer {revoked}"}).status_code == 200
    server.manage("revoke_api_key", revoked)
    response = httpx.get(f"{server.http}/speakers", headers={"Authorization": f"Bearer {revoked}"})
    assert response.status_code == 401 and "revoked" in response.json()["message"]
    _, code = ws_stream(server, revoked, "alice", via_query=True)
    assert code == 4401

    expiring = make_key(server, a, "--expires-days", "0.00002")  # about 1.7 s
    time.sleep(2.5)
    response = httpx.get(f"{server.http}/speakers", headers={"Authorization": f"Bearer {expiring}"})
    assert response.status_code == 401 and "expired" in response.json()["message"]


def _request_on(ws, prompt_id: str, text: str = ZH, *,
                linger_after_end: float = 0.0) -> tuple[list[dict], int | None]:
    """One request on an open connection: its messages up to the end or error, and the
    close code if the server closed (waiting ``linger_after_end`` s after an end to see one)."""
    messages: list[dict] = []
    try:  # the server may refuse before the text is sent: its error frame is still there to read
        ws.send(json.dumps({"req_params": {"prompt_id": prompt_id, "audio_format": "pcm", "sample_rate": 16000}}))
        ws.send(json.dumps({"text": text, "done": True}, ensure_ascii=False))
    except ConnectionClosed:
        pass
    try:
        while not messages or not (messages[-1].get("is_end") or messages[-1].get("error")):
            messages.append(json.loads(ws.recv(timeout=60)))
        if messages[-1].get("error"):
            ws.recv(timeout=10)
        elif linger_after_end:
            ws.recv(timeout=linger_after_end)
    except ConnectionClosed as exc:
        return messages, exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        pass
    return messages, None


@pytest.mark.parametrize("via_query", [False, True], ids=["header", "query"])
def test_a_key_revoked_while_its_websocket_is_open_stops_at_the_next_request(server: RunningServer, pair,
                                                                             via_query: bool) -> None:
    a, _ = pair
    key = make_key(server, a, "--scopes", "synthesize")
    url, headers = (server.ws + f"?api_key={key}", {}) if via_query else (server.ws, {"Authorization": f"Bearer {key}"})
    with connect(url, open_timeout=10, additional_headers=headers, max_size=None) as ws:
        messages, code = _request_on(ws, "alice")
        assert messages[-1].get("is_end") is True and code is None, messages[-1]
        server.manage("revoke_api_key", key)
        messages, code = _request_on(ws, "alice")
    assert [m for m in messages if not m.get("error")] == [], "no audio for a revoked key"
    assert messages[-1] == {"error": True, "message": "this API key was revoked"}
    assert code == 4401


def test_rest_takes_the_key_from_the_header_only_and_logs_never_show_it(server: RunningServer, pair) -> None:
    """A key in a URL lands in access logs: REST refuses it with 400 (with or without the
    header), the WebSocket still takes it (browsers cannot set headers there), and no log
    line shows it."""
    a, _ = pair
    for path in ("/speakers", "/usage", "/voices/alice"):
        for headers in ({}, a.auth):
            response = httpx.get(f"{server.http}{path}", params={"api_key": a.key}, headers=headers)
            assert response.status_code == 400, (path, response.text)
            assert response.json() == {"error": True, "message": response.json()["message"]}
            assert "Authorization: Bearer" in response.json()["message"]
    removed = httpx.post(f"{server.http}/remove?api_key={a.key}", json={"prompt_id": "nobody"})
    assert removed.status_code == 400, removed.text
    messages, _ = ws_stream(server, a.key, "alice", via_query=True)
    assert messages[-1].get("is_end") is True, messages[-1]
    messages, code = ws_stream(server, a.key + "x", "alice", via_query=True)  # a bad key, said in the error path
    assert code == 4401
    time.sleep(0.5)  # the access log line of the last request is written as it closes
    logs = "\n".join(path.read_text(errors="replace") for path in server.data_dir.glob("*.log"))
    secret = a.key.split("_", 2)[2]
    assert "api_key=" in logs and secret not in logs


def test_scopes_limit_what_a_key_may_do(server: RunningServer, pair, prompt_wavs) -> None:
    a, _ = pair
    speak_only = make_key(server, a, "--scopes", "synthesize")
    headers = {"Authorization": f"Bearer {speak_only}"}
    assert clone(server, speak_only, "nope", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"]).status_code == 403
    assert httpx.post(f"{server.http}/remove", json={"prompt_id": "alice"}, headers=headers).status_code == 403
    assert httpx.post(f"{server.http}/cache/save", json={"cache_dir": "x"}, headers=headers).status_code == 403
    messages, _ = ws_stream(server, speak_only, "alice", via_query=True)
    assert messages[-1].get("is_end") is True, messages[-1]
    clone_only = make_key(server, a, "--scopes", "clone")
    messages, code = ws_stream(server, clone_only, "alice")
    assert code == 4403 and "synthesize" in messages[-1]["message"]


def test_usage_is_metered_per_tenant(server: RunningServer, pair, prompt_wavs) -> None:
    _, b = pair
    before = httpx.get(f"{server.http}/usage", headers=b.auth).json()["total"]
    assert clone(server, b.key, "meter", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"]).status_code == 200
    messages, _ = ws_stream(server, b.key, "meter", "Hello there.")
    assert messages[-1].get("is_end") is True
    # a client that leaves mid-stream is metered too
    with connect(server.ws, additional_headers=b.auth, open_timeout=10) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": "meter", "audio_format": "pcm"}}))
        ws.send(json.dumps({"text": "One sentence. Another sentence.", "done": False}))
        json.loads(ws.recv(timeout=60))
    deadline = time.monotonic() + 10
    while True:
        after = httpx.get(f"{server.http}/usage", headers=b.auth).json()["total"]
        if after["streams"] - before["streams"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after["clones"] - before["clones"] == 1
    assert after["streams"] - before["streams"] == 2
    assert after["characters"] - before["characters"] == len("Hello there.") + len("One sentence. Another sentence.")
    assert after["audio_seconds"] > before["audio_seconds"] + 0.5


def test_quotas_answer_429_and_413_never_silently(server: RunningServer, pair, prompt_wavs) -> None:
    _, b = pair
    server.manage("set_quota", b.slug, "--voices", "2", "--payload-bytes", "4000000")
    existing = len(httpx.get(f"{server.http}/speakers", headers=b.auth).json())
    for i in range(existing, 2):
        assert clone(server, b.key, f"fill-{i}", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"]).status_code == 200
    over = clone(server, b.key, "one-too-many", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"])
    assert over.status_code == 429 and "voices" in over.json()["message"]
    big = clone(server, b.key, "big", b"\0" * 3_100_000, "hi")
    assert big.status_code == 413
    server.manage("set_quota", b.slug, "--voices", "0", "--payload-bytes", "0", "--clones-per-hour", "1")
    assert clone(server, b.key, "rate-1", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"]).status_code == 200
    limited = clone(server, b.key, "rate-2", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"])
    assert limited.status_code == 429 and "per hour" in limited.json()["message"]

    server.manage("set_quota", b.slug, "--clones-per-hour", "0", "--chars-per-day", "40")
    messages, code = ws_stream(server, b.key, "rate-1", "x" * 41)
    assert code == 4429 and "character quota" in messages[-1]["message"]
    server.manage("set_quota", b.slug, "--chars-per-day", "0")


def test_concurrent_streams_are_limited_per_tenant(server: RunningServer, pair, prompt_wavs) -> None:
    a, b = pair
    assert clone(server, b.key, "b-streams", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"]).status_code == 200
    server.manage("set_quota", a.slug, "--streams", "1")
    try:
        # In distributed mode the second stream goes through another Daphne process:
        # the count lives in Redis, not in either process.
        other = server.start_web_process() if server.mode == "distributed" else server
        try:
            with connect(server.ws, additional_headers=a.auth, open_timeout=10) as first:
                first.send(json.dumps({"req_params": {"prompt_id": "alice"}}))
                first.send(json.dumps({"text": "Still typing", "done": False}))
                time.sleep(0.5)
                messages, code = ws_stream(other, a.key, "alice")
                assert code == 4429 and "streams" in messages[-1]["message"], messages
                messages, _ = ws_stream(other, b.key, "b-streams")  # another tenant is not affected
                assert messages[-1].get("is_end") is True, messages[-1]
            deadline = time.monotonic() + 10
            while True:  # the lease comes back once the first stream is gone
                messages, _ = ws_stream(other, a.key, "alice")
                if messages[-1].get("is_end") or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert messages[-1].get("is_end") is True, messages[-1]
        finally:
            if other is not server:
                other.stop()
    finally:
        server.manage("set_quota", a.slug, "--streams", "0")


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that requires API keys (production settings)."""
    from tests.server import start_server

    server = start_server(tmp_path_factory.mktemp("locked"), extra_env={"TTS_REQUIRE_API_KEY": "true"})
    yield server
    server.stop()


def test_a_server_that_requires_keys_refuses_callers_without_one(locked: RunningServer) -> None:
    for method, path, body in [("GET", "/speakers", None), ("GET", "/usage", None),
                               ("POST", "/remove", {"prompt_id": "x"}), ("POST", "/cache/save", {"cache_dir": "x"}),
                               ("POST", "/clone", {"prompt_id": "x", "prompt_text": "hi", "prompt_audio": "AAAA"})]:
        response = httpx.request(method, f"{locked.http}{path}", json=body)
        assert response.status_code == 401, (path, response.text)
        assert response.json() == {"error": True, "message": response.json()["message"]}
    messages, code = ws_stream(locked, None, "x")
    assert code == 4401 and "API key is required" in messages[-1]["message"]
    assert httpx.get(f"{locked.http}/health").status_code == 200  # probes need no key
    tenant = make_tenant(locked, "locked")
    assert httpx.get(f"{locked.http}/speakers", headers=tenant.auth).json() == []


# --- the voice quota binds every path that creates voices (issue 17, item 3) ---------------


def _write_bundles(saved: str, slug: str, prompt_ids: list[str]) -> None:
    """Copies of a saved one-voice bundle, written by hand into tenant ``slug``'s own area:
    "one" (the bundle as saved) and "many" (that voice once per name in ``prompt_ids``, as a
    bundle of that many voices would be)."""
    source = Path(saved)
    area = source.parent.parent.parent / slug  # <root>/<owner>/<dir>/<bundle> -> <root>/<slug>
    with zipfile.ZipFile(source) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        (entry,) = manifest["voices"]
        members = {name: zf.read(name) for name in zf.namelist() if name != "manifest.json"}
    entries = []
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as zf:
        for n, prompt_id in enumerate(prompt_ids):
            copy = {**entry, "prompt_id": prompt_id, "features": f"features/{n}.npz"}
            zf.writestr(copy["features"], members[entry["features"]])
            if entry.get("prompt_audio"):
                copy["prompt_audio"] = f"prompts/{n}.bin"
                zf.writestr(copy["prompt_audio"], members[entry["prompt_audio"]])
            entries.append(copy)
        zf.writestr("manifest.json", json.dumps({**manifest, "voices": entries}))
    for name, data in (("one", source.read_bytes()), ("many", many.getvalue())):
        (area / name).mkdir(parents=True, exist_ok=True)
        (area / name / source.name).write_bytes(data)


@pytest.fixture
def quota_tenant(server: RunningServer, pair) -> Tenant:
    """A fresh tenant (voice limit 2) holding one voice, loaded from a bundle of A's "alice",
    and bundles "one" and "many" (four voices) in its area: no clone needed, they hold copies of alice."""
    a, _ = pair
    saved = httpx.post(f"{server.http}/cache/save", json={"cache_dir": "quota-src", "prompt_ids": ["alice"]},
                       headers=a.auth)
    assert saved.status_code == 200, saved.text
    tenant = make_tenant(server, "q")
    _write_bundles(saved.json()["cache_path"], tenant.slug, [f"bundled-{i}" for i in range(4)])
    loaded = httpx.post(f"{server.http}/cache/load", json={"cache_path": "one"}, headers=tenant.auth)
    assert loaded.status_code == 200 and loaded.json()["loaded_speakers"] == ["alice"], loaded.text
    server.manage("set_quota", tenant.slug, "--voices", "2")
    return tenant


def test_a_bundle_over_the_voice_quota_is_refused_whole(server: RunningServer, quota_tenant: Tenant) -> None:
    tenant = quota_tenant
    refused = httpx.post(f"{server.http}/cache/load", json={"cache_path": "many"}, headers=tenant.auth)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] is True and "voices" in refused.json()["message"]
    assert httpx.get(f"{server.http}/speakers", headers=tenant.auth).json() == ["alice"]  # nothing loaded
    # Replacing a voice the tenant has adds none: still allowed at the limit's edge.
    again = httpx.post(f"{server.http}/cache/load", json={"cache_path": "one"}, headers=tenant.auth)
    assert again.status_code == 200, again.text
    # Within the limit, the same bundle loads whole.
    server.manage("set_quota", tenant.slug, "--voices", "5")
    loaded = httpx.post(f"{server.http}/cache/load", json={"cache_path": "many"}, headers=tenant.auth)
    assert loaded.status_code == 200 and len(loaded.json()["loaded_speakers"]) == 4, loaded.text
    assert len(httpx.get(f"{server.http}/speakers", headers=tenant.auth).json()) == 5


def test_concurrent_clones_at_the_voice_quota_cannot_both_succeed(server: RunningServer, quota_tenant: Tenant,
                                                                  prompt_wavs) -> None:
    tenant = quota_tenant  # one voice, limit two: room for exactly one more
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda name: clone(server, tenant.key, name, prompt_wavs["jm_kumo"],
                                                   PROMPT_TEXTS["jm_kumo"]), ["race-1", "race-2"]))
    assert sorted(a.status_code for a in answers) == [200, 429], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"] is True and "voices" in refused.json()["message"]
    assert len(httpx.get(f"{server.http}/speakers", headers=tenant.auth).json()) == 2
