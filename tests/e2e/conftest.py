from __future__ import annotations

import base64

import httpx
import pytest

from tests.e2e.support import wav_bytes
from tests.server import ENGINE_DIR, RunningServer

PROMPT_TEXTS = {
    "jf_alpha": "今天天气很好，我们一起去公园散步吧。",
    "jm_kumo": "The quick brown fox jumps over the lazy dog, and then it rests.",
}


@pytest.fixture(scope="session")
def prompt_wavs() -> dict[str, bytes]:
    """Real speech to clone from: two different speakers, made by the bundled model itself."""
    from synthesis.engines.kokoro.engine import KokoroEngine

    engine = KokoroEngine(data_dir=ENGINE_DIR, threads=2)
    engine.load()
    return {
        voice: wav_bytes(engine.synthesize(text, engine.stock_features(voice)), engine.sample_rate)
        for voice, text in PROMPT_TEXTS.items()
    }


@pytest.fixture(scope="session")
def voice(server: RunningServer, prompt_wavs: dict[str, bytes]) -> str:
    """A voice cloned once per server, for the streaming tests."""
    body = {
        "prompt_audio": base64.b64encode(prompt_wavs["jf_alpha"]).decode(),
        "prompt_text": PROMPT_TEXTS["jf_alpha"],
        "prompt_id": "shared-voice",
    }
    response = httpx.post(f"{server.http}/clone", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return "shared-voice"
