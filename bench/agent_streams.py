"""Voice-agent streams: LLM-paced text that opens with a short greeting, spoken in a cloned voice.

Usage: .venv/bin/python -m bench.agent_streams [--quick] [--modes embedded,distributed] [--levels 1,2,4,8]

What a voice agent sends: a greeting ("Hello, " / "Sure, " / "你好，" / "好的，") and then
the rest of its answer arriving a few words at a time (4 English words or 4 LLM pieces of
Chinese every 30 ms). The voice is cloned through POST /clone from an espeak-ng prompt
(bench/quality_prompts.py), as a tenant's would be. Measured in one run:

- **in-process baseline** (the engine alone in this process, server idle): the greeting
  alone with a stock voice (time to its first audio), and each paragraph's RTF with the
  stock voice and with the cloned features;
- **through the API**, per server mode, 1/2/4/8 concurrent streams: time to first audio
  from the first text message, underruns per chunk with a playback clock (bench/client.py:
  a chunk that arrives after the audio before it has finished playing), stream RTF.

Prints each target of issue 19 as a ratio against the baseline of the same run:
1. TTFA, cloned voice through the API / the greeting alone in-process, stock (<= 1.5);
2. underrun chunks of single streams (0 when the in-process RTF is below 0.9);
3. in-process RTF, cloned / stock (<= 1.15);
4. the most concurrent streams with no underrun / (1 / in-process stock RTF) (>= 0.8).
Writes bench/results/agent_streams[-quick].json.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.client import llm_pieces, playback  # noqa: E402

SAMPLE_RATE = 24000
#: (greeting, the rest): what an agent says, as the LLM streams it
TEXTS: dict[str, tuple[str, str]] = {
    "en-hello": ("Hello, ", "thanks for calling the city library. Our opening hours today are from nine in the "
                 "morning until eight in the evening, and the reading room on the second floor is open to "
                 "everyone. If you would like to renew a book, I can help you with that right now."),
    "en-sure": ("Sure, ", "I can check that for you. Your order left our warehouse yesterday afternoon and "
                "should arrive on Thursday, between ten and two. You will get a message with a tracking "
                "link as soon as the driver is on the way."),
    "zh-nihao": ("你好，", "欢迎致电市图书馆。今天的开放时间是早上九点到晚上八点，二楼的阅览室对所有人开放。"
                 "如果您想续借图书，我现在就可以帮您办理。"),
    "zh-haode": ("好的，", "我来帮您查一下。您的订单昨天下午已经从仓库发出，预计周四上午十点到下午两点之间送达。"
                 "司机出发时，您会收到一条带有物流链接的短信。"),
}
#: the LLM's pace: this many pieces (bench/client.py's words) per message, one message every PACE_S
PIECES_PER_MESSAGE = 4
PACE_S = 0.03
PROMPT_VOICE = "es-m-low"


def paced_messages(rest: str) -> list[str]:
    pieces = llm_pieces(rest)
    return ["".join(pieces[i:i + PIECES_PER_MESSAGE]) for i in range(0, len(pieces), PIECES_PER_MESSAGE)]


# ---------------------------------------------------------------------- in-process baseline


def in_process_baseline(engine: Any, stock: Any, cloned: Any, text_ids: list[str], runs: int) -> dict[str, Any]:
    """The greeting alone (stock voice): time to first audio; each whole text: RTF, stock and cloned."""
    from synthesis.text.segmenter import ClauseSegmenter

    def clauses(text: str) -> list[str]:
        segmenter = ClauseSegmenter()
        return segmenter.feed(text) + segmenter.flush()

    def run(text: str, features: Any) -> tuple[float, float]:
        start = time.perf_counter()
        first = None
        samples = 0
        for audio in engine.stream(iter(clauses(text)), features, None):
            if first is None:
                first = time.perf_counter() - start
            samples += len(audio)
        elapsed = time.perf_counter() - start
        return first or elapsed, elapsed / (samples / engine.sample_rate)

    out: dict[str, Any] = {}
    for text_id in text_ids:
        greeting, rest = TEXTS[text_id]
        greeting_ttfa = [run(greeting.strip(), stock)[0] for _ in range(runs)]
        stock_rtf = [run(greeting + rest, stock)[1] for _ in range(runs)]
        cloned_rtf = [run(greeting + rest, cloned)[1] for _ in range(runs)]
        out[text_id] = {"greeting_ttfa_s": statistics.median(greeting_ttfa),
                        "stock_rtf": statistics.median(stock_rtf), "cloned_rtf": statistics.median(cloned_rtf)}
    return out


# ---------------------------------------------------------------------- through the API


async def one_stream(ws_url: str, prompt_id: str, text_id: str, timeout: float = 300.0) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    greeting, rest = TEXTS[text_id]
    arrivals: list[float] = []
    seconds: list[float] = []
    result: dict[str, Any] = {"text": text_id}
    async with connect(ws_url, max_size=None, open_timeout=60, close_timeout=5, ping_interval=None) as ws:
        await ws.send(json.dumps({"req_params": {"prompt_id": prompt_id, "audio_format": "pcm",
                                                 "sample_rate": SAMPLE_RATE}}))
        start = time.perf_counter()

        async def receive() -> None:
            while True:
                message = json.loads(await ws.recv())
                now = time.perf_counter() - start
                if message.get("error"):
                    result["error"] = str(message.get("message"))
                    return
                if message.get("is_end"):
                    result["end_s"] = now
                    return
                arrivals.append(now)
                seconds.append(len(base64.b64decode(message["data"])) / 2 / SAMPLE_RATE)

        receiver = asyncio.create_task(receive())
        try:
            await ws.send(json.dumps({"text": greeting, "done": False}, ensure_ascii=False))
            for message in paced_messages(rest):
                await asyncio.sleep(PACE_S)
                await ws.send(json.dumps({"text": message, "done": False}, ensure_ascii=False))
            await ws.send(json.dumps({"text": "", "done": True}))
            await asyncio.wait_for(receiver, timeout)
        except Exception as exc:  # noqa: BLE001 - closed by the server, timed out: reported, not raised
            result.setdefault("error", f"{exc.__class__.__name__}: {exc}")
        finally:
            receiver.cancel()
    if arrivals and "error" not in result:
        audio_s = sum(seconds)
        result.update(ttfa_s=arrivals[0], chunks=len(arrivals), audio_s=audio_s,
                      rtf=result["end_s"] / audio_s, **playback(arrivals, seconds),
                      arrivals=[round(x, 3) for x in arrivals], seconds=[round(x, 3) for x in seconds])
    return result


async def level_run(ws_url: str, prompt_id: str, text_ids: list[str], level: int) -> list[dict[str, Any]]:
    """``level`` streams at once, the texts in turn; at level 1, each text once, one after another."""
    if level == 1:
        return [await one_stream(ws_url, prompt_id, text_id) for text_id in text_ids]
    return list(await asyncio.gather(*(one_stream(ws_url, prompt_id, text_ids[i % len(text_ids)])
                                       for i in range(level))))


def clone_voice(http: str, wav_path: Path, transcript: str, prompt_id: str) -> None:
    body = {"prompt_audio": base64.b64encode(wav_path.read_bytes()).decode(), "prompt_text": transcript,
            "prompt_id": prompt_id}
    response = httpx.post(f"{http}/clone", json=body, timeout=600)
    response.raise_for_status()


def through_api(mode: str, wav_path: Path, transcript: str, text_ids: list[str], levels: list[int],
                rounds: int) -> dict[str, Any]:
    from tests.s3server import start_s3_server
    from tests.server import start_server
    from tests.services import create_database, start_redis

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        services: list[Any] = []
        extra: dict[str, str] = {}
        if mode == "distributed":  # its own Redis, PostgreSQL database and S3 server, as the tests start them
            s3, redis_server, database = start_s3_server(root / "s3"), start_redis(root / "redis"), create_database()
            services = [s3, redis_server, database]
            s3.create_bucket("bench")
            extra = {**s3.env(), "TTS_REDIS_URL": redis_server.url, "TTS_DATABASE_URL": database.url,
                     "TTS_FEATURE_STORE": "s3://bench/features"}
        server = start_server(root / mode, mode=mode, extra_env=extra, workers=1)
        try:
            clone_voice(server.http, wav_path, transcript, "agent-bench")
            asyncio.run(level_run(server.ws, "agent-bench", text_ids[:1], 1))  # warm the path
            out: dict[str, Any] = {}
            for level in levels:
                rows: list[dict[str, Any]] = []
                for _ in range(rounds):
                    rows += asyncio.run(level_run(server.ws, "agent-bench", text_ids, level))
                out[str(level)] = rows
                print(f"  {mode} {level} streams: " + summary_line(rows), flush=True)
            return out
        finally:
            server.stop()
            for service in services:
                if hasattr(service, "drop"):
                    service.drop()
                else:
                    service.stop()


def summary_line(rows: list[dict[str, Any]]) -> str:
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return f"all failed: {rows[0].get('error')}"
    late = sum(r["underruns"] for r in ok)
    chunks = sum(r["chunks"] for r in ok)
    return (f"TTFA p50 {statistics.median(r['ttfa_s'] for r in ok):.2f} s, late chunks {late}/{chunks}, "
            f"RTF p50 {statistics.median(r['rtf'] for r in ok):.2f}, failed {len(rows) - len(ok)}")


# ---------------------------------------------------------------------- targets


def targets(baseline: dict[str, Any], api: dict[str, dict[str, Any]]) -> dict[str, Any]:
    stock_rtf = statistics.median(b["stock_rtf"] for b in baseline.values())
    cloned_rtf = statistics.median(b["cloned_rtf"] for b in baseline.values())
    out: dict[str, Any] = {"inprocess_stock_rtf": stock_rtf, "inprocess_cloned_rtf": cloned_rtf,
                           "t3_cloned_over_stock": cloned_rtf / stock_rtf,
                           "engine_streams": 1 / stock_rtf}
    for mode, levels in api.items():
        single = [r for r in levels.get("1", []) if "error" not in r]
        ttfa_ratio = {text_id: statistics.median(r["ttfa_s"] for r in single if r["text"] == text_id)
                      / baseline[text_id]["greeting_ttfa_s"]
                      for text_id in baseline if any(r["text"] == text_id for r in single)}
        clean = [int(level) for level, rows in levels.items()
                 if rows and all("error" not in r and r["underruns"] == 0 for r in rows)]
        out[mode] = {
            "t1_ttfa_over_greeting": ttfa_ratio,
            "t2_single_stream_late_chunks": f"{sum(r['underruns'] for r in single)}/"
                                            f"{sum(r['chunks'] for r in single)}",
            "streams_without_underrun": max(clean, default=0),
            "t4_streams_over_engine": max(clean, default=0) * stock_rtf,
        }
    return out


def print_targets(result: dict[str, Any]) -> None:
    t = result["targets"]
    print(f"\nin-process (engine alone, same run): stock RTF {t['inprocess_stock_rtf']:.2f}, "
          f"cloned RTF {t['inprocess_cloned_rtf']:.2f}, engine throughput 1/RTF = {t['engine_streams']:.2f} streams")
    for text_id, b in result["baseline"].items():
        print(f"  {text_id}: greeting alone, stock voice: first audio {b['greeting_ttfa_s']:.2f} s")
    print(f"3. cloned / stock RTF in-process: {t['t3_cloned_over_stock']:.2f}x (target <= 1.15)")
    for mode in result["api"]:
        m = t[mode]
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in m["t1_ttfa_over_greeting"].items())
        print(f"[{mode}]")
        print(f"1. TTFA through the API, cloned / greeting alone in-process, stock: {ratios} (target <= 1.5)")
        print(f"2. late chunks, single streams: {m['t2_single_stream_late_chunks']} (target 0 while in-process "
              f"RTF < 0.9)")
        print(f"4. streams with no underrun: {m['streams_without_underrun']} = {m['t4_streams_over_engine']:.2f}x "
              f"the engine's 1/RTF (target >= 0.8)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two texts, 1 and 2 streams, one round")
    parser.add_argument("--modes", default="embedded", help="embedded,distributed")
    parser.add_argument("--levels", default="", help="concurrent streams, e.g. 1,2,4,8")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttsplatform.settings")

    text_ids = ["en-hello", "zh-nihao"] if args.quick else list(TEXTS)
    levels = [int(x) for x in (args.levels or ("1,2" if args.quick else "1,2,4,8")).split(",")]
    rounds = args.rounds or (1 if args.quick else 2)

    from bench.quality_prompts import VOICES, make_prompts
    from synthesis.engines.kokoro.engine import KokoroEngine
    from tests.server import ENGINE_DIR

    voice = next(v for v in VOICES if v.key == PROMPT_VOICE)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = make_prompts(Path(tmp), (voice,))[voice.key]
        engine = KokoroEngine(data_dir=ENGINE_DIR, threads=int(os.environ.get("TTS_ENGINE_THREADS", "2")))
        engine.load()
        from voices.prompt_audio import decode_audio_bytes

        samples, rate, _ = decode_audio_bytes(wav_path.read_bytes(), raw_sample_rate=16000, max_seconds=60)
        cloned = engine.extract_features(samples, rate, voice.text)  # what /clone registers (refinement off)
        stock = engine.stock_features(engine.stock_voices()[0])
        print("in-process baseline ...", flush=True)
        baseline = in_process_baseline(engine, stock, cloned, text_ids, runs=1 if args.quick else 2)
        del engine
        api = {mode: through_api(mode, wav_path, voice.text, text_ids, levels, rounds)
               for mode in args.modes.split(",")}
    result = {"quick": args.quick, "started": started, "levels": levels, "rounds": rounds,
              "pieces_per_message": PIECES_PER_MESSAGE, "pace_s": PACE_S, "prompt_voice": PROMPT_VOICE,
              "baseline": baseline, "api": api}
    result["targets"] = targets(baseline, api)
    print_targets(result)
    out = Path(args.out or REPO / "bench" / "results" / f"agent_streams{'-quick' if args.quick else ''}.json")
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
