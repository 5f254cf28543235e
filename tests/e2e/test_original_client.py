"""A client written for the original servers works unchanged, four at a time."""
from __future__ import annotations

import base64
import json
import random
from concurrent.futures import ThreadPoolExecutor

from websockets.sync.client import connect

from tests.e2e.support import decode_audio, rms_dbfs
from tests.server import RunningServer

TEXTS = {
    "zh": "北京今天晴转多云，最高气温二十三度。出门记得带伞，晚上可能有小雨。",
    "en": "Good morning! Today will be cloudy with a high of 23 degrees. Take an umbrella, it may rain tonight.",
}


def original_client(ws_url: str, prompt_id: str, seed: int, lang: str) -> dict:
    """What users of the original servers wrote: every message decoded on its own,
    text in pieces of 1 to 5 characters, empty instruct_text, empty final text."""
    rng = random.Random(seed)
    text = TEXTS[lang]
    audio_seconds = 0.0
    chunks = 0
    with connect(ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": prompt_id, "audio_format": "wav",
                                           "sample_rate": 24000, "instruct_text": ""}}))
        i = 0
        while i < len(text):
            n = rng.randint(1, 5)
            ws.send(json.dumps({"text": text[i:i + n], "done": False}, ensure_ascii=False))
            i += n
        ws.send(json.dumps({"text": "", "done": True}))
        while True:
            msg = json.loads(ws.recv(timeout=180))
            if msg["error"]:
                raise AssertionError(msg["message"])
            if msg["is_end"]:
                return {"chunks": chunks, "end_index": msg["index"], "seconds": audio_seconds}
            assert msg["index"] == chunks
            samples, rate = decode_audio(base64.b64decode(msg["data"]), "wav", 24000)
            assert rate == 24000 and rms_dbfs(samples) > -45
            audio_seconds += len(samples) / rate
            chunks += 1


def test_four_original_clients_at_once_in_chinese_and_english(server: RunningServer, voice: str) -> None:
    langs = ["zh", "en", "zh", "en"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: original_client(server.ws, voice, s, langs[s]), range(4)))
    for r in results:
        assert r["chunks"] >= 2 and r["end_index"] == r["chunks"]
        assert 4.0 < r["seconds"] < 25.0, r
