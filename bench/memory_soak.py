"""Memory under a long run of streams: the server's RSS must level off, not grow.

Usage: .venv/bin/python -m bench.memory_soak [--mode embedded|distributed] [--streams N]
       [--parallel P] [--every K] [--minutes M] [--engine kokoro|replay] [--tracemalloc 300,1000]

Starts a real server (embedded: one Daphne process; distributed: Daphne plus two Celery
workers on a private Redis, a fresh PostgreSQL database and a SeaweedFS S3 server, the test
suite's helpers), clones a voice, then runs N short /tts streams, P at a time: every one of
the 14 format/chunk-mode pairs (7 formats x file/stream) in turn, texts alternating
"你好，欢迎使用。" and "Hello, welcome." (one clause, one audio chunk each), and every 10th
client hanging up mid-stream: it sends both sentences (two clauses) and then either closes
with a close frame after its first audio chunk or drops the TCP connection as soon as its
request is sent, while the job speaks.
Every K streams it records the resident memory (VmRSS) of Daphne and of each worker, and
a GET /speakers. ``--minutes`` stops early (at a multiple of K) when the time is up, on a
machine too busy for N streams.

``--tracemalloc A,B,...`` runs the servers with bench/soak_hook on PYTHONPATH (tracemalloc
from start-up) and takes a snapshot in each server process after A, B, ... streams; the
differences between consecutive snapshots (the allocations that grew) are written to
bench/results/memory_soak.trace-<label>.txt. RSS under tracemalloc is not comparable with
a plain run.

Results: bench/results/memory_soak.json (one entry per ``--label``, default the mode) and
the table bench/results/memory_soak.md, rebuilt from every entry of the JSON.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import RunningServer, start_server  # noqa: E402

RESULTS = REPO / "bench" / "results"
HOOK_DIR = REPO / "bench" / "soak_hook"
FORMATS = ["opus", "pcm", "wav", "mp3", "flac", "aac", "m4a"]
CHUNK_MODES = ["file", "stream"]
TEXTS = ["你好，欢迎使用。", "Hello, welcome."]
PROMPT = REPO / "tests" / "fixtures" / "speaker_jf_alpha_1.wav"
PROMPT_TEXT = "The weather is lovely today. Let's take a walk in the park."
VOICE = "soak"
CANCEL_EVERY = 10
#: the stream counts whose RSS the summary lists (plus the last one)
REPORT_AT = (100, 500, 1000, 1500, 2000)
#: streams before the plateau is judged: the first encoders of each format, arenas, caches
WARMUP_STREAMS = 300


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def stream_plan(i: int, hang_up_every: int = CANCEL_EVERY) -> tuple[str, str, str, str | None]:
    """Stream ``i``'s format, chunk mode, text and how it hangs up (None: it does not).

    i % 7 and i % 2 walk through all 14 pairs every 14 streams; the text changes every 14,
    so each pair gets both languages. The 10th, 20th, ... hang up with two clauses to
    speak, so that audio is still on its way: alternately with a close frame after the
    first chunk ("close") and by dropping the TCP connection right after the request
    ("drop")."""
    fmt = FORMATS[i % len(FORMATS)]
    mode = CHUNK_MODES[i % len(CHUNK_MODES)]
    text = TEXTS[(i // (len(FORMATS) * len(CHUNK_MODES))) % len(TEXTS)]
    hangup = None
    if hang_up_every and i % hang_up_every == hang_up_every - 1:
        hangup = "close" if (i // hang_up_every) % 2 == 0 else "drop"
        text = "".join(TEXTS)
    return fmt, mode, text, hangup


def one_stream(ws_url: str, i: int, hang_up_every: int = CANCEL_EVERY) -> str:
    """Run stream ``i``; returns its outcome (completed, how it hung up, or an error)."""
    fmt, mode, text, hangup = stream_plan(i, hang_up_every)
    request = {"req_params": {"prompt_id": VOICE, "audio_format": fmt, "chunk_mode": mode},
               "text": text, "done": True}
    try:
        with connect(ws_url, open_timeout=30, close_timeout=5, max_size=None) as ws:
            ws.send(json.dumps(request, ensure_ascii=False))
            if hangup == "drop":  # no close frame: the server sees the TCP connection vanish
                time.sleep(0.05)  # long enough for the request to be read and its job started
                with contextlib.suppress(OSError):
                    ws.socket.shutdown(socket.SHUT_RDWR)
                ws.socket.close()
                return "dropped"
            while True:
                message = json.loads(ws.recv(timeout=120))
                if message.get("error"):
                    return f"error: {message.get('message')}"
                if message.get("is_end"):
                    return "completed" if hangup is None else "completed before hang-up"
                if hangup == "close":
                    return "closed after a chunk"
    except Exception as exc:  # noqa: BLE001 - a soak counts failures, it does not stop on them
        return f"error: {exc.__class__.__name__}: {exc}"


def distributed_env(data_dir: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    """Redis, a fresh PostgreSQL database and an S3 server for one distributed stack (the
    test suite's helpers), stopped when ``stack`` closes."""
    from tests.s3server import start_s3_server
    from tests.services import create_database, start_redis

    redis_server = start_redis(data_dir / "redis")
    stack.callback(redis_server.stop)
    database = create_database()
    stack.callback(database.drop)
    s3 = start_s3_server(data_dir / "s3")
    stack.callback(s3.stop)
    s3.create_bucket("tts-voices")
    return {**s3.env(), "TTS_REDIS_URL": redis_server.url, "TTS_DATABASE_URL": database.url,
            "TTS_FEATURE_STORE": "s3://tts-voices/features"}


def processes(server: RunningServer) -> dict[str, int]:
    named = {"daphne": server.process.pid}
    for n, worker in enumerate(server.workers, 1):
        named[f"worker{n}"] = worker.pid
    return named


def request_snapshots(trace_dir: Path, pids: dict[str, int], label: str, timeout: float = 300) -> None:
    """Ask every server process for a tracemalloc snapshot (bench/soak_hook) and wait for them."""
    for pid in pids.values():
        (trace_dir / f"{pid}.{label}.request").write_text("")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((trace_dir / f"{pid}.{label}.done").exists() for pid in pids.values()):
            return
        time.sleep(0.5)
    print(f"warning: not every process wrote its snapshot {label}", flush=True)


def trace_report(trace_dir: Path, pids: dict[str, int], labels: list[str], top: int = 25) -> str:
    """What grew between consecutive snapshots, per process: the biggest tracebacks by size."""
    lines = []
    for name, pid in pids.items():
        snapshots = []
        for label in labels:
            path = trace_dir / f"{pid}.{label}.snapshot"
            if path.exists():
                snapshots.append((label, tracemalloc.Snapshot.load(str(path)).filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")])))
        for (a, old), (b, new) in zip(snapshots, snapshots[1:]):
            total = sum(s.size for s in new.statistics("filename")) - sum(s.size for s in old.statistics("filename"))
            lines.append(f"== {name} (pid {pid}): streams {a} -> {b}: traced memory {total / 1e6:+.2f} MB")
            for stat in new.compare_to(old, "traceback")[:top]:
                lines.append(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+7d} blocks "
                             f"(now {stat.size / 1024:.1f} KiB in {stat.count} blocks)")
                for frame in list(stat.traceback)[-6:]:
                    lines.append(f"      {frame.filename}:{frame.lineno}")
            lines.append("")
    return "\n".join(lines)


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS at the report points, and the growth per 100 streams after warm-up (least squares)."""
    names = list(samples[0]["rss_mb"]) if samples else []
    at = {str(s["streams"]): s["rss_mb"] for s in samples if s["streams"] in REPORT_AT or s is samples[-1]}
    growth: dict[str, float | None] = {}
    halves: dict[str, list[float | None]] = {}
    for name in names:
        points = [(s["streams"], s["rss_mb"][name]) for s in samples
                  if s["streams"] >= WARMUP_STREAMS and s["rss_mb"].get(name) is not None]
        growth[name] = _slope(points)
        mid = len(points) // 2
        halves[name] = [_slope(points[:mid + 1]), _slope(points[mid:])]
    return {"rss_mb_at": at, "warmup_streams": WARMUP_STREAMS,
            "growth_mb_per_100_streams_after_warmup": growth,
            "growth_mb_per_100_streams_first_and_second_half_after_warmup": halves}


def _slope(points: list[tuple[int, float]]) -> float | None:
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    if not var:
        return None
    return round(sum((x - mx) * (y - my) for x, y in points) / var * 100, 2)


def soak(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        env = {"TTS_ENGINE": args.engine}
        if args.mode == "distributed":
            env.update(distributed_env(tmp, stack))
        trace_at = sorted(int(n) for n in args.tracemalloc.split(",")) if args.tracemalloc else []
        trace_dir = tmp / "trace"
        if trace_at:
            trace_dir.mkdir()
            env.update({"PYTHONPATH": os.pathsep.join([str(HOOK_DIR), os.environ.get("PYTHONPATH", "")]),
                        "TTS_SOAK_TRACE_DIR": str(trace_dir)})
        began = time.monotonic()
        server = start_server(tmp / "server", mode=args.mode, extra_env=env, ready_timeout=600)
        stack.callback(server.stop)
        print(f"server ready in {time.monotonic() - began:.0f} s", flush=True)
        body = {"prompt_audio": base64.b64encode(PROMPT.read_bytes()).decode(), "prompt_text": PROMPT_TEXT,
                "prompt_id": VOICE}
        response = httpx.post(f"{server.http}/clone", json=body, timeout=600)
        assert response.status_code == 200, response.text
        print(f"voice cloned in {time.monotonic() - began:.0f} s since start", flush=True)
        pids = processes(server)
        samples: list[dict[str, Any]] = [
            {"streams": 0, "elapsed_s": 0.0, "rss_mb": {n: rss_mb(p) for n, p in pids.items()}}]
        outcomes: dict[str, int] = {}
        errors: list[str] = []
        start = time.monotonic()
        trace_labels: list[str] = []
        print(f"{args.mode} ({args.engine}): pids {pids}; after clone {samples[0]['rss_mb']}", flush=True)
        with ThreadPoolExecutor(args.parallel) as pool:
            for done in range(0, args.streams, args.every):
                block = range(done, min(done + args.every, args.streams))
                for outcome in pool.map(lambda i: one_stream(server.ws, i, args.hang_up_every), block):
                    key = "error" if outcome.startswith("error") else outcome
                    outcomes[key] = outcomes.get(key, 0) + 1
                    if key == "error" and len(errors) < 20:
                        errors.append(outcome)
                httpx.get(f"{server.http}/speakers", timeout=30).raise_for_status()
                if not server.alive():
                    raise RuntimeError(f"a server process exited:\n{server.log_tail()}")
                count = block.stop
                samples.append({"streams": count, "elapsed_s": round(time.monotonic() - start, 1),
                                "rss_mb": {n: rss_mb(p) for n, p in pids.items()}, "errors": outcomes.get("error", 0)})
                print(f"{count:6d} streams  {time.monotonic() - start:7.0f} s  "
                      + "  ".join(f"{n} {mb:7.1f} MB" for n, mb in samples[-1]["rss_mb"].items() if mb is not None)
                      + f"  errors {outcomes.get('error', 0)}", flush=True)
                for mark in trace_at:
                    if done < mark <= count:
                        request_snapshots(trace_dir, pids, str(count))
                        trace_labels.append(str(count))
                if args.minutes and time.monotonic() - start > args.minutes * 60 and count < args.streams:
                    print(f"stopping after {count} streams: the {args.minutes:g}-minute budget is spent", flush=True)
                    break
        began = time.monotonic()
        trace = trace_report(trace_dir, pids, trace_labels) if trace_at else None
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for path in (tmp / "server").glob("*.log"):
                shutil.copy(path, args.keep_logs / path.name)
        if trace_at:
            print(f"snapshots compared in {time.monotonic() - began:.0f} s", flush=True)
        log_tail = server.log_tail(2000) if outcomes.get("error") else None
    result = {
        "mode": args.mode, "engine": args.engine, "created": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"),
        "config": {"streams_planned": args.streams, "parallel": args.parallel, "every": args.every,
                   "formats": FORMATS, "chunk_modes": CHUNK_MODES, "texts": TEXTS,
                   "hang_up_every": args.hang_up_every, "tracemalloc": trace_at, "minutes": args.minutes,
                   "cores": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "streams_run": samples[-1]["streams"], "duration_s": samples[-1]["elapsed_s"], "outcomes": outcomes,
        "error_samples": errors, "samples": samples, "summary": summarise(samples),
    }
    if log_tail:
        result["server_log_tail"] = log_tail[-4000:]
    if trace is not None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"memory_soak.trace-{args.label or args.mode}.txt").write_text(trace)
        print(trace[:6000])
    return result


def write_table(results: dict[str, Any], path: Path) -> None:
    """One table per run: RSS of each process every 100 streams, and the summary."""
    lines = ["# Memory soak (bench/memory_soak.py)", "",
             "Resident memory (VmRSS, MB) of each server process, sampled after every block of streams.", ""]
    for label, run in results.items():
        names = list(run["samples"][0]["rss_mb"])
        summary = run["summary"]
        lines += [f"## {label}: {run['mode']} mode, {run['engine']} engine, {run['streams_run']} streams "
                  f"in {run['duration_s'] / 60:.0f} min ({run['config']['parallel']} at a time), {run['created']}", "",
                  f"Outcomes: {', '.join(f'{k} {v}' for k, v in sorted(run['outcomes'].items()))}.", "",
                  "| streams | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
        for s in run["samples"]:
            lines.append(f"| {s['streams']} | " + " | ".join(
                "" if s["rss_mb"].get(n) is None else f"{s['rss_mb'][n]:.1f}" for n in names) + " |")
        growth = summary["growth_mb_per_100_streams_after_warmup"]
        halves = summary["growth_mb_per_100_streams_first_and_second_half_after_warmup"]
        lines += ["", f"Growth after {summary['warmup_streams']} streams (least squares, MB per 100 streams): "
                  + "; ".join(f"{n} {growth[n]:+.2f} (first half {halves[n][0]:+.2f}, second half "
                              f"{halves[n][1]:+.2f})" if growth[n] is not None and None not in halves[n]
                              else f"{n} n/a" for n in names) + ".", ""]
        if run.get("note"):
            lines += [run["note"], ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["embedded", "distributed"], default="embedded")
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--every", type=int, default=100, help="streams between RSS samples")
    parser.add_argument("--minutes", type=float, default=0, help="stop after this long (0: run every stream)")
    parser.add_argument("--hang-up-every", type=int, default=CANCEL_EVERY,
                        help="every n-th client hangs up mid-stream (0: none)")
    parser.add_argument("--engine", choices=["kokoro", "replay"], default="kokoro",
                        help="replay: the zero-cost stand-in engine, to soak the platform alone")
    parser.add_argument("--tracemalloc", default="", help="stream counts to snapshot at, e.g. 300,1000")
    parser.add_argument("--label", default="", help="key of this run in memory_soak.json (default: the mode)")
    parser.add_argument("--note", default="", help="a line stored with the run and printed under its table")
    parser.add_argument("--keep-logs", type=Path, help="copy the server processes' logs into this folder")
    parser.add_argument("--results", type=Path, default=RESULTS / "memory_soak.json")
    args = parser.parse_args(argv)
    result = soak(args)
    if args.note:
        result["note"] = args.note
    results: dict[str, Any] = {}
    if args.results.exists():
        results = json.loads(args.results.read_text())
    results[args.label or args.mode] = result
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    write_table(results, args.results.with_suffix(".md"))
    print(json.dumps(result["summary"], indent=1))
    return result


if __name__ == "__main__":
    main()
