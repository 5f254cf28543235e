"""Batch jobs: throughput, and what a running batch costs a live stream.

Usage: .venv/bin/python -m bench.batch_jobs [--quick] [--modes embedded,distributed] [--items 50]

Measured in one run, with a voice cloned through POST /clone from an espeak-ng prompt:

- **in-process baseline**: the engine alone rendering the job's texts back to back with the
  cloned features (bench process, no server running), before and after the API runs (the
  mean of the two): audio seconds per wall second;
- **through the API**, per server mode (distributed: as `make run-distributed` runs it, one
  worker for streams and clones and one for batch items at nice 10):
  - batch throughput: a job of N mixed Chinese/English items, audio seconds per wall second
    from the job's created_at to its finished_at;
  - a voice-agent stream's time to first audio (bench/agent_streams.py's "Hello, ..." text,
    LLM-paced) with the server idle, then while a second job of N items runs.

Prints issue 20's targets as ratios against the same run: batch throughput / in-process
(>= 0.9) and stream TTFA while a batch runs / idle (<= 1.5). Writes bench/results/batch_jobs[-quick].json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.agent_streams import PROMPT_VOICE, clone_voice, one_stream  # noqa: E402

SENTENCES = [
    "The museum opens at ten on weekdays.", "今天下午三点开会，请准时参加。",
    "Please keep your ticket until the end of the journey.", "本店营业时间为早上八点到晚上十点。",
    "Your package will arrive on Friday morning.", "会议室在三楼，出电梯后左转。",
    "Thank you for waiting, an agent will be with you shortly.", "明天气温下降，请注意保暖。",
    "The next train to the airport leaves from platform four.", "您的验证码是六位数字，五分钟内有效。",
]
STREAM_TEXT = "en-hello"
POLL_S = 2.0


def job_texts(items: int) -> list[str]:
    return [f"{i + 1}. {SENTENCES[i % len(SENTENCES)]}" for i in range(items)]


def in_process(texts: list[str], wav_path: Path, transcript: str) -> dict[str, float]:
    from bench.quality_prompts import VOICES  # noqa: F401 - the prompt was made with it
    from synthesis.engines.kokoro.engine import KokoroEngine
    from synthesis.render import render_file
    from tests.server import ENGINE_DIR
    from voices.prompt_audio import decode_audio_bytes

    engine = KokoroEngine(data_dir=ENGINE_DIR, threads=int(os.environ.get("TTS_ENGINE_THREADS", "2")))
    engine.load()
    samples, rate, _ = decode_audio_bytes(wav_path.read_bytes(), raw_sample_rate=16000, max_seconds=60)
    cloned = engine.extract_features(samples, rate, transcript)
    render_file(engine, cloned, texts[0], "wav", 24000)  # warm
    started = time.perf_counter()
    audio = sum(render_file(engine, cloned, text, "wav", 24000).seconds for text in texts)
    wall = time.perf_counter() - started
    return {"audio_s": audio, "wall_s": wall, "throughput": audio / wall}


def run_job(http: str, batch_id: str, texts: list[str], timeout: float = 3600) -> dict[str, Any]:
    """The job's wall time is the server's own, from its created_at to its finished_at (so the
    client's polling, every POLL_S, neither adds to it nor costs the server much)."""
    body = {"prompt_id": "batch-bench", "audio_format": "wav", "inputs": [{"text": t} for t in texts]}
    started = time.perf_counter()
    response = httpx.put(f"{http}/batches/{batch_id}", json=body, timeout=120)
    response.raise_for_status()
    while time.perf_counter() - started < timeout:
        time.sleep(POLL_S)
        job = httpx.get(f"{http}/batches/{batch_id}", timeout=60).json()
        if job["state"] not in ("queued", "running"):
            wall = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds()
            return {"state": job["state"], "audio_s": job["audio_seconds"], "wall_s": wall,
                    "throughput": job["audio_seconds"] / wall, "counts": job["counts"]}
    raise TimeoutError(f"batch {batch_id} did not end in {timeout} s")


def streams_ttfa(ws: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        result = asyncio.run(one_stream(ws, "batch-bench", STREAM_TEXT))
        if "error" in result:
            raise RuntimeError(result["error"])
        out.append(result["ttfa_s"])
        time.sleep(1.0)
    return out


def through_api(mode: str, wav_path: Path, transcript: str, texts: list[str], runs: int) -> dict[str, Any]:
    from tests.s3server import start_s3_server
    from tests.server import start_server
    from tests.services import create_database, start_redis

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        services: list[Any] = []
        extra: dict[str, str] = {}
        if mode == "distributed":
            s3, redis_server, database = start_s3_server(root / "s3"), start_redis(root / "redis"), create_database()
            services = [s3, redis_server, database]
            s3.create_bucket("bench")
            extra = {**s3.env(), "TTS_REDIS_URL": redis_server.url, "TTS_DATABASE_URL": database.url,
                     "TTS_FEATURE_STORE": "s3://bench/features"}
        # distributed: make run-distributed's shape, a worker for streams and clones, one for batch items at nice 10
        specs = [{"queues": "synthesis,clone"}, {"queues": "batch", "threads": 1, "nice": 10}]
        server = start_server(root / mode, mode=mode, extra_env=extra, worker_specs=specs)
        try:
            clone_voice(server.http, wav_path, transcript, "batch-bench")
            streams_ttfa(server.ws, 1)  # warm the path
            idle = streams_ttfa(server.ws, runs)
            print(f"  {mode}: stream TTFA idle {statistics.median(idle):.2f} s", flush=True)
            alone = run_job(server.http, "alone", texts)
            print(f"  {mode}: batch of {len(texts)} alone: {alone['audio_s']:.1f} s of audio in "
                  f"{alone['wall_s']:.1f} s ({alone['throughput']:.2f} audio s per s)", flush=True)
            httpx.put(f"{server.http}/batches/busy", timeout=120, json={
                "prompt_id": "batch-bench", "audio_format": "wav",
                "inputs": [{"text": t} for t in texts]}).raise_for_status()
            while httpx.get(f"{server.http}/batches/busy", timeout=60).json()["counts"]["running"] < 1:
                time.sleep(0.2)
            time.sleep(2.0)  # well into the job
            busy = streams_ttfa(server.ws, runs)
            state = httpx.get(f"{server.http}/batches/busy", timeout=60).json()
            print(f"  {mode}: stream TTFA while a batch runs {statistics.median(busy):.2f} s "
                  f"(batch still running: {state['state'] == 'running'})", flush=True)
            httpx.post(f"{server.http}/batches/busy/cancel", timeout=60)
            return {"idle_ttfa_s": idle, "busy_ttfa_s": busy, "batch_was_running": state["state"] == "running",
                    "batch": alone}
        finally:
            server.stop()
            for service in services:
                service.drop() if hasattr(service, "drop") else service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 items, 2 streams per measurement")
    parser.add_argument("--modes", default="embedded,distributed")
    parser.add_argument("--items", type=int, default=0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttsplatform.settings")
    import django

    django.setup()
    items = args.items or (10 if args.quick else 50)
    runs = 2 if args.quick else 5
    texts = job_texts(items)

    from bench.quality_prompts import VOICES, make_prompts

    voice = next(v for v in VOICES if v.key == PROMPT_VOICE)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = make_prompts(Path(tmp), (voice,))[voice.key]
        # the engine alone before and after the API runs (the machine's speed drifts over minutes): their mean
        runs_alone = []
        api: dict[str, Any] = {}
        for mode in ["", *args.modes.split(","), ""]:
            if not mode:
                print(f"in-process baseline: {items} texts back to back ...", flush=True)
                runs_alone.append(in_process(texts, wav_path, voice.text))
                print(f"  {runs_alone[-1]['audio_s']:.1f} s of audio in {runs_alone[-1]['wall_s']:.1f} s "
                      f"({runs_alone[-1]['throughput']:.2f} audio s per s)", flush=True)
            else:
                api[mode] = through_api(mode, wav_path, voice.text, texts, runs)
        baseline = {"runs": runs_alone, "throughput": statistics.mean(r["throughput"] for r in runs_alone)}
    result: dict[str, Any] = {"quick": args.quick, "started": started, "items": items, "runs": runs,
                              "baseline": baseline, "api": api, "targets": {}}
    print()
    for mode, m in api.items():
        throughput = m["batch"]["throughput"] / baseline["throughput"]
        ttfa = statistics.median(m["busy_ttfa_s"]) / statistics.median(m["idle_ttfa_s"])
        result["targets"][mode] = {"throughput_over_inprocess": throughput, "busy_ttfa_over_idle": ttfa}
        print(f"[{mode}] batch throughput / in-process: {throughput:.2f}x (target >= 0.9); "
              f"stream TTFA while a batch runs / idle: {ttfa:.2f}x (target <= 1.5)")
    out = Path(args.out or REPO / "bench" / "results" / f"batch_jobs{'-quick' if args.quick else ''}.json")
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
