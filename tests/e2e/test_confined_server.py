"""A server configured for hosting: client paths confined to roots, private URLs allowed
(for this test only, since every test server lives on loopback)."""
from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import MODES, distributed_env
from tests.e2e.conftest import PROMPT_TEXTS
from tests.server import RunningServer, start_server
from tests.services import create_database


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("allowed-root")


@pytest.fixture(scope="module", params=MODES)
def confined(request: pytest.FixtureRequest, tmp_path_factory, roots: Path) -> Iterator[RunningServer]:
    env = {"TTS_PATH_ROOTS": str(roots), "TTS_ALLOW_PRIVATE_URLS": "1", "TTS_URL_TIMEOUT": "3",
           "TTS_WS_IDLE_TIMEOUT": "3", "TTS_CLONE_MAX_WAITING": "0", "TTS_MAX_STREAMS": "1"}
    database = None
    if request.param == "distributed":
        # Its own database and Redis database: this stack must not share queues or voices
        # with the session's distributed server.
        database = create_database()
        env |= distributed_env(request.getfixturevalue("redis_server"), database,
                               request.getfixturevalue("s3_server"), redis_db=1, bucket="tts-confined")
    server = start_server(tmp_path_factory.mktemp(f"confined-{request.param}"), mode=request.param,
                          extra_env=env, workers=1)
    yield server
    server.stop()
    if database is not None:
        database.drop()


@pytest.fixture(scope="module")
def audio_site(prompt_wavs: dict[str, bytes]) -> Iterator[str]:
    """A real HTTP server on loopback that serves the prompt (and a slow endpoint)."""
    wav = prompt_wavs["jm_kumo"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/slow":
                time.sleep(6)
            if self.path == "/missing":
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(len(wav)))
            self.end_headers()
            self.wfile.write(wav)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _clone(server: RunningServer, prompt_id: str, audio: str) -> httpx.Response:
    body = {"prompt_audio": audio, "prompt_text": PROMPT_TEXTS["jm_kumo"], "prompt_id": prompt_id}
    return httpx.post(f"{server.http}/clone", json=body, timeout=120)


def test_clone_from_an_http_url(confined: RunningServer, audio_site: str) -> None:
    r = _clone(confined, "from-url", f"{audio_site}/voice")  # no extension: recognised by content
    assert r.status_code == 200, r.text
    assert "from-url" in httpx.get(f"{confined.http}/speakers").json()


@pytest.mark.parametrize("path,status", [("/missing", 400), ("/slow", 400)])
def test_bad_urls_get_clear_errors(confined: RunningServer, audio_site: str, path: str, status: int) -> None:
    r = _clone(confined, "bad-url", f"{audio_site}{path}")
    assert r.status_code == status, r.text
    assert r.json()["error"] is True


def test_paths_are_confined_to_the_roots(confined: RunningServer, roots: Path, prompt_wavs, tmp_path: Path) -> None:
    inside = roots / "voice.wav"
    inside.write_bytes(prompt_wavs["jm_kumo"])
    assert _clone(confined, "inside", str(inside)).status_code == 200
    outside = tmp_path / "voice.wav"
    outside.write_bytes(prompt_wavs["jm_kumo"])
    for attempt in (str(outside), str(roots / ".." / outside.parent.name / "voice.wav"), "/etc/passwd"):
        r = _clone(confined, "outside", attempt)
        assert r.status_code == 403, (attempt, r.text)
    link = roots / f"sneaky-{confined.mode}.wav"  # roots is shared by both modes
    link.symlink_to(outside)
    assert _clone(confined, "outside", str(link)).status_code == 403


def test_cache_dirs_are_confined_too(confined: RunningServer, roots: Path, tmp_path: Path) -> None:
    ok = httpx.post(f"{confined.http}/cache/save", json={"cache_dir": str(roots / "caches"), "prompt_ids": []})
    assert ok.status_code == 200, ok.text
    bad = httpx.post(f"{confined.http}/cache/save", json={"cache_dir": str(tmp_path), "prompt_ids": []})
    assert bad.status_code == 403
    assert not (tmp_path / "tone_cache.ttsc").exists()
    bad = httpx.post(f"{confined.http}/cache/load", json={"cache_path": "/etc/passwd"})
    assert bad.status_code == 403


def test_a_clone_does_not_stall_other_requests(confined: RunningServer, prompt_wavs) -> None:
    """Cloning runs off the event loop: other requests answer while it computes."""
    audio = base64.b64encode(prompt_wavs["jf_alpha"]).decode()
    body = {"prompt_audio": audio, "prompt_text": PROMPT_TEXTS["jf_alpha"], "prompt_id": "slow-clone"}
    done = threading.Event()
    threading.Thread(target=lambda: (httpx.post(f"{confined.http}/clone", json=body, timeout=120), done.set()),
                     daemon=True).start()
    time.sleep(0.3)
    worst = 0.0
    polls = 0
    while not done.is_set() and polls < 200:
        t = time.monotonic()
        assert httpx.get(f"{confined.http}/speakers", timeout=10).status_code == 200
        worst = max(worst, time.monotonic() - t)
        polls += 1
        time.sleep(0.05)
    assert done.wait(120)
    assert polls >= 3, "the clone finished too quickly to observe"
    assert worst < 1.0, f"a request waited {worst:.2f} s behind a clone"


def test_a_silent_client_is_closed_and_frees_its_slot(confined: RunningServer, prompt_wavs) -> None:
    assert _clone(confined, "idle-voice", base64.b64encode(prompt_wavs["jm_kumo"]).decode()).status_code == 200
    with connect(confined.ws, open_timeout=10) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": "idle-voice"}}))
        ws.send(json.dumps({"text": "Half a sentence and then", "done": False}))
        started = time.monotonic()
        reply = json.loads(ws.recv(timeout=30))
        assert reply["error"] is True and "no message" in reply["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 4408
        assert 2.5 < time.monotonic() - started < 10


def test_clones_beyond_the_queue_get_429(confined: RunningServer, prompt_wavs) -> None:
    """One clone worker, no queue: a burst of clones is answered, never queued without bound."""
    from concurrent.futures import ThreadPoolExecutor

    audio = base64.b64encode(prompt_wavs["jm_kumo"]).decode()
    with ThreadPoolExecutor(4) as workers:
        responses = list(workers.map(lambda i: _clone(confined, f"burst-{i}", audio), range(4)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 429 in codes and set(codes) <= {200, 429}, codes
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"] is True and "busy" in r.json()["message"]
    assert httpx.get(f"{confined.http}/health").status_code == 200


def test_streams_beyond_the_limit_are_refused_not_queued(confined: RunningServer, prompt_wavs) -> None:
    assert _clone(confined, "cap-voice", base64.b64encode(prompt_wavs["jm_kumo"]).decode()).status_code == 200
    with connect(confined.ws, open_timeout=10) as first:
        first.send(json.dumps({"req_params": {"prompt_id": "cap-voice"}}))
        first.send(json.dumps({"text": "Still typing", "done": False}))
        time.sleep(0.5)
        with connect(confined.ws, open_timeout=10) as second:
            second.send(json.dumps({"req_params": {"prompt_id": "cap-voice"}}))
            reply = json.loads(second.recv(timeout=30))
            assert reply["error"] is True and "busy" in reply["message"]
            with pytest.raises(ConnectionClosed) as closed:
                second.recv(timeout=10)
            assert closed.value.rcvd.code == 4429
    # the slot comes back once the first client is gone
    deadline = time.monotonic() + 10
    while True:
        with connect(confined.ws, open_timeout=10) as again:
            again.send(json.dumps({"req_params": {"prompt_id": "cap-voice", "audio_format": "pcm"}}))
            try:
                again.send(json.dumps({"text": "Hi.", "done": True}))
            except ConnectionClosed:  # still busy: the server answered and closed before the text went out
                pass
            reply = json.loads(again.recv(timeout=60))
        if not reply["error"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert reply["error"] is False, reply
