"""Clone refinement end to end: a voice is usable at once ("refining"), then its refined
features are swapped in ("ready"), in both modes; removing a voice mid-search is harmless."""
from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import MODES, distributed_env
from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import stream_tts
from tests.server import RunningServer, start_server
from tests.services import create_database

#: long enough that the voice is still refining when /clone answers, short enough for a test
REFINE_SECONDS = 10


@pytest.fixture(scope="module", params=MODES)
def refining(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {"TTS_REFINE": "1", "TTS_REFINE_SECONDS": str(REFINE_SECONDS)}
    database = None
    if request.param == "distributed":
        database = create_database()  # its own database and Redis database: no shared queues or voices
        env |= distributed_env(request.getfixturevalue("redis_server"), database,
                               request.getfixturevalue("s3_server"), redis_db=3, bucket="tts-refine")
    server = start_server(tmp_path_factory.mktemp(f"refine-{request.param}"), mode=request.param, extra_env=env,
                          workers=1)
    yield server
    server.stop()
    if database is not None:
        database.drop()


def _clone(server: RunningServer, prompt_id: str, wav: bytes, text: str) -> None:
    body = {"prompt_audio": base64.b64encode(wav).decode(), "prompt_text": text, "prompt_id": prompt_id}
    response = httpx.post(f"{server.http}/clone", json=body, timeout=120)
    assert response.status_code == 200 and response.json()["existed"] is False, response.text


def _voice(server: RunningServer, prompt_id: str) -> dict:
    response = httpx.get(f"{server.http}/voices/{prompt_id}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _wait_ready(server: RunningServer, prompt_id: str, timeout: float = REFINE_SECONDS * 6 + 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        voice = _voice(server, prompt_id)
        if voice["state"] == "ready":
            return voice
        time.sleep(0.5)
    raise AssertionError(f"{prompt_id} still refining after {timeout} s:\n{server.log_tail()}")


def _speak(server: RunningServer, prompt_id: str) -> None:
    params = {"prompt_id": prompt_id, "audio_format": "pcm", "sample_rate": 24000, "chunk_mode": "stream"}
    result = stream_tts(server.ws, params, ["Hello there. "], final_text="Nice to meet you.")
    assert not result.errors and result.end is not None, result.messages[-1:]
    assert sum(len(c) for c in result.chunks()) > 24000  # well over half a second of 16-bit audio


def test_a_clone_refines_in_the_background_and_speaks_all_along(refining: RunningServer,
                                                                prompt_wavs: dict[str, bytes]) -> None:
    _clone(refining, "refined", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"])
    quick = _voice(refining, "refined")
    assert quick["state"] == "refining", quick
    assert "sim_before" not in quick["metrics"]
    assert 0.0 < quick["sim"] <= 1.0 and quick["sim"] == quick["metrics"]["sim"], quick  # the quick clone's
    _speak(refining, "refined")  # with the quick features, while the search runs

    ready = _wait_ready(refining, "refined")
    metrics = ready["metrics"]
    assert metrics["refined"] is True, metrics
    assert 0.0 < metrics["sim_before"] <= 1.0 and 0.0 < metrics["sim_after"] <= 1.0
    assert metrics["sim_after"] >= metrics["sim_before"]
    assert ready["sim"] == metrics["sim_after"]  # the detail shows what refinement reached
    assert metrics["seconds"] <= REFINE_SECONDS * 3
    assert 0.25 <= metrics["gain"] <= 4.0 and "prompt_lufs" in metrics["loudness"]
    _speak(refining, "refined")  # with the refined features


def test_removing_a_voice_while_it_refines_is_harmless(refining: RunningServer,
                                                       prompt_wavs: dict[str, bytes]) -> None:
    _clone(refining, "short-lived", prompt_wavs["jf_alpha"], PROMPT_TEXTS["jf_alpha"])
    assert _voice(refining, "short-lived")["state"] == "refining"
    assert httpx.post(f"{refining.http}/remove", json={"prompt_id": "short-lived"}).status_code == 200
    # The same id again: the first search must not swap its features into the new voice.
    _clone(refining, "short-lived", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"])
    ready = _wait_ready(refining, "short-lived")
    assert ready["prompt_text"] == PROMPT_TEXTS["jm_kumo"]
    assert ready["metrics"].get("refined") is True
    _speak(refining, "short-lived")
    assert refining.alive() and httpx.get(f"{refining.http}/health").status_code == 200
