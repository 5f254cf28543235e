"""What distributed mode adds to latency over embedded mode, measured in one run.

Usage: .venv/bin/python -m bench.mode_overhead [--runs N]

Starts both stacks on this machine: embedded (one Daphne process) and distributed
(Daphne + one Celery worker + a private Redis + a fresh PostgreSQL database + SeaweedFS
S3). Clones the same voice in both, then alternates requests between them (so machine
noise hits both alike) and reports, per mode:
- TTFA: from sending the text (with done=true) to the first audio chunk;
- stream time: from sending the text to the end message;
- per-chunk delay: the mean gap between chunks after the first, distributed minus embedded.
Writes bench/results/mode_overhead.json. Compare differences, not absolute times.
"""
from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.support import stream_tts, wav_bytes  # noqa: E402
from tests.s3server import start_s3_server  # noqa: E402
from tests.server import ENGINE_DIR, start_server  # noqa: E402
from tests.services import create_database, start_redis  # noqa: E402

PROMPT = ("jf_alpha", "今天天气很好，我们一起去公园散步吧。")
#: several clauses each, so a stream has several chunks (file mode: one per clause)
TEXTS = ["你好，欢迎使用语音合成服务。今天天气很好。我们一起去散步吧。", "Hello, and welcome. The weather is nice today. Let us go for a walk."]


def clone(http: str, wav: bytes) -> None:
    body = {"prompt_audio": base64.b64encode(wav).decode(), "prompt_text": PROMPT[1], "prompt_id": "bench"}
    response = httpx.post(f"{http}/clone", json=body, timeout=120)
    response.raise_for_status()


def one(ws_url: str, text: str) -> dict[str, float]:
    result = stream_tts(ws_url, {"prompt_id": "bench", "audio_format": "pcm", "sample_rate": 24000}, [], final_text=text)
    assert not result.errors and result.end is not None, result.messages
    audio_arrivals = result.arrival[: len(result.audio)]
    gaps = [b - a for a, b in zip(audio_arrivals, audio_arrivals[1:], strict=False)]
    return {"ttfa_s": audio_arrivals[0], "stream_s": result.arrival[-1], "chunks": len(result.audio),
            "gap_s": statistics.mean(gaps) if gaps else 0.0}


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    return {
        "ttfa_p50_ms": 1000 * statistics.median(r["ttfa_s"] for r in rows),
        "stream_p50_ms": 1000 * statistics.median(r["stream_s"] for r in rows),
        "chunks_mean": statistics.mean(r["chunks"] for r in rows),
        "chunk_gap_p50_ms": 1000 * statistics.median(r["gap_s"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()

    from synthesis.engines.kokoro.engine import KokoroEngine

    engine = KokoroEngine(data_dir=ENGINE_DIR, threads=2)
    engine.load()
    wav = wav_bytes(engine.synthesize(PROMPT[1], engine.stock_features(PROMPT[0])), engine.sample_rate)
    del engine

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        s3 = start_s3_server(root / "s3")
        redis_server = start_redis(root / "redis")
        database = create_database()
        servers = {}
        try:
            s3.create_bucket("bench")
            servers["embedded"] = start_server(root / "embedded", mode="embedded")
            servers["distributed"] = start_server(root / "distributed", mode="distributed", workers=1, extra_env={
                **s3.env(), "TTS_REDIS_URL": redis_server.url, "TTS_DATABASE_URL": database.url,
                "TTS_FEATURE_STORE": "s3://bench/features",
            })
            for server in servers.values():
                clone(server.http, wav)
                one(server.ws, TEXTS[0])  # warm both paths
            rows: dict[str, list[dict[str, float]]] = {mode: [] for mode in servers}
            for i in range(args.runs):
                for mode, server in servers.items():
                    rows[mode].append(one(server.ws, TEXTS[i % len(TEXTS)]))
        finally:
            for server in servers.values():
                server.stop()
            redis_server.stop()
            s3.stop()
            database.drop()

    summary = {mode: summarise(r) for mode, r in rows.items()}
    emb, dist = summary["embedded"], summary["distributed"]
    added = {
        "ttfa_p50_ms": dist["ttfa_p50_ms"] - emb["ttfa_p50_ms"],
        "per_chunk_ms": dist["chunk_gap_p50_ms"] - emb["chunk_gap_p50_ms"],
        "ttfa_ratio": dist["ttfa_p50_ms"] / emb["ttfa_p50_ms"],
    }
    print(f"{'mode':<12} {'TTFA p50 ms':>12} {'stream p50 ms':>14} {'chunks':>7} {'gap p50 ms':>11}")
    for mode, s in summary.items():
        print(f"{mode:<12} {s['ttfa_p50_ms']:>12.1f} {s['stream_p50_ms']:>14.1f} {s['chunks_mean']:>7.1f}"
              f" {s['chunk_gap_p50_ms']:>11.1f}")
    print(f"distributed adds {added['ttfa_p50_ms']:+.1f} ms to TTFA p50 (x{added['ttfa_ratio']:.3f}), "
          f"{added['per_chunk_ms']:+.1f} ms per chunk")
    out = REPO / "bench" / "results" / "mode_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": args.runs, "summary": summary, "distributed_adds": added,
                               "rows": rows}, indent=1))
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
