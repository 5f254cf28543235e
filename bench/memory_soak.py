"""Memory under a long run of requests: the server's RSS must level off, not grow.

Usage: .venv/bin/python -m bench.memory_soak [--requests N] [--parallel P]

Starts a real server, clones a voice, then runs N short streams (P at a time, mixed
formats and both chunk modes, some clients hanging up mid-stream) plus REST calls,
sampling the server's resident memory. Prints RSS after warm-up and at the end, and
the growth per 1000 requests.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.support import stream_tts, wav_bytes  # noqa: E402
from tests.server import ENGINE_DIR, start_server  # noqa: E402

FORMATS = ["pcm", "wav", "mp3", "opus", "flac", "aac", "m4a"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_request(ws_url: str, i: int) -> None:
    fmt = FORMATS[i % len(FORMATS)]
    mode = "stream" if i % 2 else "file"
    if i % 10 == 9:  # hang up mid-stream
        with connect(ws_url) as ws:
            ws.send(json.dumps({"req_params": {"prompt_id": "soak", "audio_format": fmt}}))
            ws.send(json.dumps({"text": "这句话说到一半，客户端就挂断了。", "done": True}))
        return
    result = stream_tts(ws_url, {"prompt_id": "soak", "audio_format": fmt, "chunk_mode": mode}, ["好。"])
    assert not result.errors, result.errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    from synthesis.engines.kokoro import KokoroEngine

    engine = KokoroEngine(data_dir=ENGINE_DIR, threads=1)
    engine.load()
    prompt = wav_bytes(engine.synthesize("今天天气很好，我们一起去公园散步吧。", engine.stock_features("jf_alpha")), 24000)
    del engine
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            body = {"prompt_audio": base64.b64encode(prompt).decode(), "prompt_text": "今天天气很好，我们一起去公园散步吧。",
                    "prompt_id": "soak"}
            assert httpx.post(f"{server.http}/clone", json=body, timeout=300).status_code == 200
            pid = server.process.pid
            samples = []
            start = time.monotonic()
            warmup = max(50, args.requests // 10)
            with ThreadPoolExecutor(args.parallel) as pool:
                for done in range(0, args.requests, 50):
                    list(pool.map(lambda i: one_request(server.ws, i), range(done, min(done + 50, args.requests))))
                    httpx.get(f"{server.http}/speakers")
                    samples.append((done + 50, rss_mb(pid)))
                    print(f"{done + 50:6d} requests  rss {samples[-1][1]:7.1f} MB  {time.monotonic() - start:6.0f} s",
                          flush=True)
        finally:
            server.stop()
    after_warmup = next(mb for n, mb in samples if n >= warmup)
    end = samples[-1][1]
    span = samples[-1][0] - warmup
    growth = (end - after_warmup) / span * 1000 if span > 0 else 0.0
    print(f"rss after {warmup} requests: {after_warmup:.1f} MB; after {samples[-1][0]}: {end:.1f} MB; "
          f"growth {growth:+.1f} MB per 1000 requests")


if __name__ == "__main__":
    main()
