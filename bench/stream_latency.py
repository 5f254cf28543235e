"""Time to first audio and real-time factor, through the whole API vs the engine in-process.

Usage: .venv/bin/python -m bench.stream_latency [--runs N]

Starts a real server (Daphne, embedded mode) on a free port, clones a voice, then for a
Chinese and an English paragraph measures, in the same run:
- in-process: the engine alone (first clause latency, RTF), the baseline;
- through the API: WebSocket -> Daphne -> job -> channel layer -> WebSocket, text sent
  at once with done=true; TTFA counted from the first text message.
Prints a table with ratios against the baseline and writes bench/results/stream_latency.json.
Machines here are noisy: compare ratios, not absolute times.
"""
from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.support import decode_audio, stream_tts, wav_bytes  # noqa: E402
from tests.server import ENGINE_DIR, start_server  # noqa: E402

PARAGRAPHS = {
    "zh": "今天的天气非常好，阳光明媚，微风不燥。我们一起去公园散散步吧，顺便看看湖边新开的花。"
          "下午三点半还有一个会议，记得提前十分钟到会议室。",
    "en": "Streaming speech should start quickly. Every clause is spoken as soon as it is complete, "
          "so a listener hears the first words while the rest of the answer is still being written. "
          "That is what makes a voice assistant feel responsive.",
}


def in_process(engine, features, text: str) -> dict[str, float]:
    from synthesis.text.segmenter import ClauseSegmenter

    seg = ClauseSegmenter()
    clauses = seg.feed(text) + seg.flush()
    start = time.perf_counter()
    first = None
    total = 0
    for audio in engine.stream(iter(clauses), features, None):
        if first is None:
            first = time.perf_counter() - start
        total += len(audio)
    elapsed = time.perf_counter() - start
    seconds = total / engine.sample_rate
    return {"ttfa_s": first or elapsed, "rtf": elapsed / seconds, "audio_s": seconds}


def through_api(ws_url: str, prompt_id: str, text: str) -> dict[str, float]:
    start = time.perf_counter()
    result = stream_tts(ws_url, {"prompt_id": prompt_id, "audio_format": "pcm"}, [text])
    elapsed = time.perf_counter() - start
    assert not result.errors and result.end, result.errors
    seconds = sum(len(decode_audio(c, "pcm", 24000)[0]) for c in result.chunks()) / 24000
    return {"ttfa_s": result.arrival[0], "rtf": elapsed / seconds, "audio_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from synthesis.engines.kokoro.engine import KokoroEngine

    engine = KokoroEngine(data_dir=ENGINE_DIR, threads=2)
    engine.load()
    prompt = engine.synthesize("今天天气很好，我们一起去公园散步吧。", engine.stock_features("jf_alpha"))
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            body = {"prompt_audio": base64.b64encode(wav_bytes(prompt, 24000)).decode(),
                    "prompt_text": "今天天气很好，我们一起去公园散步吧。", "prompt_id": "bench"}
            t = time.perf_counter()
            assert httpx.post(f"{server.http}/clone", json=body, timeout=300).status_code == 200
            clone_s = time.perf_counter() - t
            features = _server_features(server, engine)
            rows = {}
            for lang, text in PARAGRAPHS.items():
                base = [in_process(engine, features, text) for _ in range(args.runs)]
                api = [through_api(server.ws, "bench", text) for _ in range(args.runs)]
                rows[lang] = {
                    "in_process": _median(base),
                    "api": _median(api),
                }
        finally:
            server.stop()
    print(f"clone: {clone_s:.2f} s for a {len(prompt) / 24000:.1f} s prompt")
    print(f"{'text':5} {'metric':8} {'in-process':>11} {'api':>8} {'ratio':>7}")
    for lang, r in rows.items():
        for metric in ("ttfa_s", "rtf"):
            a, b = r["in_process"][metric], r["api"][metric]
            print(f"{lang:5} {metric:8} {a:11.3f} {b:8.3f} {b / a:7.2f}")
    out = REPO / "bench" / "results" / "stream_latency.json"
    out.write_text(json.dumps({"clone_s": clone_s, "runs": args.runs, "results": rows}, indent=2))
    print(f"wrote {out.relative_to(REPO)}")


def _server_features(server, engine):
    """The features the server stored for the cloned voice (read back from its feature store)."""
    from synthesis.engines.base import Features

    files = sorted((server.data_dir / "voices").rglob("*.npz"))
    return Features.from_bytes(files[-1].read_bytes())


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


if __name__ == "__main__":
    main()
