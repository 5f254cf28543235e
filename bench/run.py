"""The platform benchmark: latency, chunk timing, underruns, RTF, clone and encoder cost,
at 1-16 concurrent streams, in embedded and distributed mode, through the real API.

Usage:
    .venv/bin/python -m bench.run            # full (`make bench`), 13-32 minutes on 2 cores, by CPU
    .venv/bin/python -m bench.run --quick    # `make bench-quick`, about 2 minutes
    .venv/bin/python -m bench.run --smoke --results-dir DIR --no-plots   # seconds (tests/bench)
    .venv/bin/python -m bench.report bench/results/bench.json           # table and plots again

For each engine setup it starts both stacks side by side (embedded: one Daphne process;
distributed: Daphne + one Celery worker + a private Redis + a fresh PostgreSQL database +
SeaweedFS S3, as the end-to-end tests do), clones a voice in each (timing POST /clone),
then for each concurrency level runs rounds of N simultaneous streams, alternating the
modes so machine noise hits both alike, sent in two ways (see bench/client.py):
- ``stream``: the text word by word (a piece every 30-50 ms), TTFA from the first complete clause;
- ``burst``: text and done at once, TTFA from done; RTF and throughput come from these.

Setups:
- ``replay``: synthesis/engines/replay.py, pre-made audio at zero cost and no pacing: every
  time measured is the platform's own (plus, for chunk gaps, the text's arrival). Also the
  CPU time of the server processes per second of audio (Daphne, worker, Redis; not PostgreSQL);
- ``replay-paced``: the same engine sleeping ``--replay-rtf`` s per second of audio (an engine
  on another device: time passes, this CPU stays free), text at once; the same engine and
  texts also run in-process, in as many threads, so the platform's overhead is a throughput
  ratio from one run: in-process vs WebSocket -> Daphne -> job -> channel layer -> WebSocket;
- ``kokoro``: the default engine, what users get on this machine (with an in-process baseline
  at 1 stream in the full run).
Plus the encoder cost per format, in-process (bench/encoders.py).

Writes ``<results-dir>/<name>.json``, ``<name>-latency.png`` and ``<name>-throughput.png``
(matplotlib, if installed) and a README-ready markdown table (``README-table.md`` for the
full run, ``README-table-<name>.md`` otherwise), and prints the table. Progress: a line per
setup, mode and level. Other test processes seen running during a level are recorded.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import math
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import machine  # noqa: E402
from bench.client import SCENARIOS, StreamRecord, run_streams  # noqa: E402
from bench.stats import median, summary  # noqa: E402
from core.atomic_files import atomic_write  # noqa: E402

T = TypeVar("T")

RESULTS_DIR = REPO / "bench" / "results"
PROMPT_WAV = REPO / "tests" / "fixtures" / "speaker_jf_alpha_1.wav"
PROMPT_TEXT = "The weather is lovely today. Let's take a walk in the park."
PROMPT_ID = "bench"
MODES = ("embedded", "distributed")


@dataclass(frozen=True)
class Setup:
    """One engine configuration the benchmark runs (its servers are started with it)."""

    key: str
    engine: str  # TTS_ENGINE
    title: str
    scenarios: tuple[str, ...] = SCENARIOS
    paced: bool = False  # replay engine only: sleep replay_rtf s per audio s
    in_process: bool = False  # also run the engine alone, in-process, as a baseline


SETUPS: dict[str, Setup] = {
    "replay": Setup("replay", "replay", "Replay engine at zero cost: the platform alone"),
    "replay-paced": Setup("replay-paced", "replay", "Replay engine, paced", scenarios=("burst",), paced=True,
                          in_process=True),
    "kokoro": Setup("kokoro", "kokoro", "Kokoro, the default engine", in_process=True),
}

#: What an LLM answer might start with: a short first clause, then a few sentences (5 clauses, ~7 s).
TEXTS: list[tuple[str, str]] = [
    ("en", "Sure! Here is the plan. We meet at nine in the lobby. Then we walk to the station together. "
           "The train leaves at half past nine."),
    ("zh", "好的！下面是明天的安排。我们九点在大厅集合。然后一起走到车站。火车九点半出发。"),
]
WARM_UP = [("warm-up", "你好，hello.")]


@dataclass
class Config:
    name: str = "bench"
    engines: tuple[str, ...] = tuple(SETUPS)
    modes: tuple[str, ...] = MODES
    levels: dict[str, tuple[int, ...]] = field(default_factory=lambda: {
        "replay": (1, 2, 4, 8, 16), "replay-paced": (1, 2, 4, 8, 16), "kokoro": (1, 2, 4, 8, 16)})
    #: streams per (level, scenario, mode) to aim for: rounds = ceil(samples / level)
    samples: dict[str, int] = field(default_factory=lambda: {"replay": 32, "replay-paced": 32, "kokoro": 8})
    #: pacing of the replay-paced setup: seconds slept per second of audio
    replay_rtf: float = 0.2
    piece_delay: tuple[float, float] = (0.030, 0.050)
    clones: int = 5
    kokoro_inprocess_runs: int = 4
    encoder_seconds: float = 10.0
    encoder_repeats: int = 3
    distributed_workers: int = 1
    results_dir: Path = RESULTS_DIR
    plots: bool = True

    def rounds(self, engine: str, level: int) -> int:
        return max(1, math.ceil(self.samples[engine] / level))


PRESETS: dict[str, Config] = {
    "full": Config(),
    "quick": Config(name="bench-quick", levels={"replay": (1, 4, 16), "replay-paced": (1, 16), "kokoro": (1, 2)},
                    samples={"replay": 6, "replay-paced": 2, "kokoro": 2}, clones=1, kokoro_inprocess_runs=0,
                    encoder_repeats=1),
    "smoke": Config(name="bench-smoke", engines=("replay", "replay-paced"), modes=("embedded",),
                    levels={"replay": (1, 2), "replay-paced": (1, 2)}, samples={"replay": 2, "replay-paced": 1},
                    replay_rtf=0.05, piece_delay=(0.005, 0.010), clones=1, kokoro_inprocess_runs=0,
                    encoder_seconds=1.0, encoder_repeats=1),
}

_started = time.monotonic()
#: "setup xN" levels during which other test processes were running (filled by bench_engine)
SHARED_LEVELS: list[str] = []


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", flush=True)


# ------------------------------------------------------------------------------- stacks


class Services:
    """Redis, S3 and PostgreSQL databases for distributed stacks, started on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.s3: Any = None
        self.redis: Any = None
        self.databases: list[Any] = []
        self._next_db = 0

    def distributed_env(self, engine: str) -> dict[str, str]:
        from tests.s3server import start_s3_server
        from tests.services import create_database, start_redis

        if self.s3 is None:
            self.s3 = start_s3_server(self.root / "s3")
            self.s3.create_bucket("bench")
        if self.redis is None:
            self.redis = start_redis(self.root / "redis")
        database = create_database()
        self.databases.append(database)
        redis_db, self._next_db = self._next_db, self._next_db + 1
        return {**self.s3.env(), "TTS_REDIS_URL": self.redis.url.rsplit("/", 1)[0] + f"/{redis_db}",
                "TTS_DATABASE_URL": database.url, "TTS_FEATURE_STORE": f"s3://bench/{engine}"}

    def pids(self) -> list[int]:
        return [self.redis.process.pid] if self.redis is not None and self.redis.process is not None else []

    def stop(self) -> None:
        for database in self.databases:
            try:
                database.drop()
            except Exception as exc:  # noqa: BLE001 - best effort at the end
                log(f"could not drop {database.name}: {exc}")
        if self.redis is not None:
            self.redis.stop()
        if self.s3 is not None:
            self.s3.stop()


def start_stacks(setup: Setup, cfg: Config, services: Services, root: Path) -> dict[str, Any]:
    from tests.server import start_server

    top = max(cfg.levels[setup.key])
    common = {"TTS_ENGINE": setup.engine, "TTS_MAX_STREAMS": str(top + 8), "TTS_WORKER_STREAMS": str(top),
              "TTS_REPLAY_RTF": str(cfg.replay_rtf if setup.paced else 0.0), "TTS_REPLAY_DELAY_MS": "0"}
    envs = {mode: dict(common) for mode in cfg.modes}
    if "distributed" in envs:
        envs["distributed"].update(services.distributed_env(setup.key))
    stacks: dict[str, Any] = {}
    errors: list[BaseException] = []

    def start(mode: str) -> None:
        try:
            stacks[mode] = start_server(root / f"{setup.key}-{mode}", mode=mode, extra_env=envs[mode],
                                        workers=cfg.distributed_workers)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others are up or down
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(mode,)) for mode in cfg.modes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for stack in stacks.values():
            stack.stop()
        raise errors[0]
    return {mode: stacks[mode] for mode in cfg.modes}


def stack_pids(stack: Any, services: Services) -> list[int]:
    pids = [stack.process.pid] + [w.pid for w in stack.workers]
    return pids + (services.pids() if stack.mode == "distributed" else [])


def clone_latencies(stacks: dict[str, Any], count: int) -> dict[str, dict[str, Any]]:
    """POST /clone ``count`` times per mode (alternating), the first one as the benchmark voice."""
    import base64

    audio = base64.b64encode(PROMPT_WAV.read_bytes()).decode()
    times: dict[str, list[float]] = {mode: [] for mode in stacks}
    for i in range(max(1, count)):
        for mode, stack in stacks.items():
            body = {"prompt_audio": audio, "prompt_text": PROMPT_TEXT,
                    "prompt_id": PROMPT_ID if i == 0 else f"{PROMPT_ID}-{i}"}
            start = time.perf_counter()
            response = httpx.post(f"{stack.http}/clone", json=body, timeout=300)
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"clone failed in {mode} mode: {response.status_code} {response.text}\n"
                                   f"{stack.log_tail()}")
            times[mode].append(elapsed)
    return {mode: {"prompt_s": 5.0, **summary(t)} for mode, t in times.items()}


# ------------------------------------------------------------------------------- in-process


def _clauses(text: str) -> list[str]:
    from synthesis.text.segmenter import ClauseSegmenter

    segmenter = ClauseSegmenter()
    return segmenter.feed(text) + segmenter.flush()


def in_process_level(engine: Any, features: Any, level: int, seed: int) -> list[StreamRecord]:
    """``level`` threads, each speaking one text with the engine alone (no platform), all at once."""
    records = [StreamRecord("burst", TEXTS[(seed + i) % len(TEXTS)][0], level, i) for i in range(level)]
    barrier = threading.Barrier(level)

    def one(i: int) -> None:
        record = records[i]
        clauses = _clauses(TEXTS[(seed + i) % len(TEXTS)][1])
        barrier.wait()
        start = record.started = time.perf_counter()
        record.first_clause_at = record.done_at = 0.0
        for audio in engine.stream(iter(clauses), features, None):
            record.arrivals.append(time.perf_counter() - start)
            record.seconds.append(len(audio) / engine.sample_rate)
        record.end_at = time.perf_counter() - start

    with ThreadPoolExecutor(level) as pool:
        list(pool.map(one, range(level)))
    return records


def in_process(setup: Setup, cfg: Config) -> dict[str, Any]:
    if not setup.in_process:
        return {}
    if setup.engine == "replay":
        from synthesis.engines.replay import ReplayEngine

        engine: Any = ReplayEngine(rtf=cfg.replay_rtf if setup.paced else 0.0, delay_ms=0)
        engine.load()
        features = engine.stock_features()
        out = {}
        for level in cfg.levels[setup.key]:
            rounds = cfg.rounds(setup.key, level)  # as many as through the API: the same mix of texts
            records: list[StreamRecord] = []
            batches = []
            for r in range(rounds):
                batch = in_process_level(engine, features, level, seed=r)
                records += batch
                batches.append(batch)
            out[str(level)] = summarize(records, batches)
        return out
    if cfg.kokoro_inprocess_runs <= 0:
        return {}
    from synthesis.engines.kokoro.engine import KokoroEngine
    from tests.server import ENGINE_DIR

    engine = KokoroEngine(data_dir=ENGINE_DIR, threads=2)
    engine.load()
    features = engine.stock_features("jf_alpha")
    records, batches = [], []
    for r in range(cfg.kokoro_inprocess_runs):
        batch = in_process_level(engine, features, 1, seed=r)
        records += batch
        batches.append(batch)
    del engine
    gc.collect()
    return {"1": summarize(records, batches)}


# ------------------------------------------------------------------------------- summaries


def summarize(records: list[StreamRecord], batches: list[list[StreamRecord]], cpu_s: float | None = None,
              client_cpu_s: float | None = None) -> dict[str, Any]:
    metrics = [r.metrics() for r in records]
    ok = [m for m in metrics if m["ok"]]
    gaps = [g for m in ok for g in m["gaps_s"]]
    audio = sum(m["audio_s"] for m in ok)
    throughputs = []
    for batch in batches:
        done = [r for r in batch if r.ok]
        if done:
            span = max(r.started + r.end_at for r in done) - min(r.started for r in done)
            throughputs.append(sum(sum(r.seconds) for r in done) / span)
    headrooms = [m["min_headroom_s"] for m in ok if m.get("min_headroom_s") is not None]
    out: dict[str, Any] = {
        "streams": len(records),
        "errors": len(records) - len(ok),
        "error_samples": sorted({r.error or "no audio/end" for r in records if not r.ok})[:3],
        "ttfa_clause_ms": summary(m["ttfa_clause_s"] for m in ok),
        "ttfa_done_ms": summary(m["ttfa_done_s"] for m in ok if m["ttfa_done_s"] is not None),
        "end_after_done_ms": summary(m["end_after_done_s"] for m in ok),
        "gap_ms": summary(gaps),
        "chunks_mean": round(statistics.mean(m["chunks"] for m in ok), 2) if ok else None,
        "underruns": sum(m["underruns"] for m in ok),
        "streams_with_underrun": sum(1 for m in ok if m["underruns"]),
        "stall_ms_total": round(1000 * sum(m["stall_s"] for m in ok), 1),
        "min_headroom_ms": round(1000 * min(headrooms), 1) if headrooms else None,
        "rtf": summary((m["rtf"] for m in ok if m["rtf"] is not None), scale=1.0, digits=3),
        "audio_s_total": round(audio, 2),
        "throughput_x_realtime": round(median(throughputs), 3) if throughputs else None,
        "connect_ms": summary(r.connect_s for r in records if r.ok),
    }
    if cpu_s is not None and audio:
        out["platform_cpu_ms_per_audio_s"] = round(1000 * cpu_s / audio, 2)
    if client_cpu_s is not None and audio:
        out["client_cpu_ms_per_audio_s"] = round(1000 * client_cpu_s / audio, 2)
    return out


def _fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}"


def progress_line(key: str, mode: str, level: int, cell: dict[str, Any]) -> str:
    parts = [f"{key:<12} {mode:<11} x{level:<2}"]
    s, b = cell.get("stream"), cell.get("burst")
    if s:
        parts.append(f"TTFA clause p50/p95 {_fmt(s['ttfa_clause_ms']['p50'])}/{_fmt(s['ttfa_clause_ms']['p95'])} ms"
                     f" | gap p95 {_fmt(s['gap_ms']['p95'])} ms")
    if b:
        parts.append(f"TTFA done p50/p95 {_fmt(b['ttfa_done_ms']['p50'])}/{_fmt(b['ttfa_done_ms']['p95'])} ms | RTF "
                     f"p50 {_fmt(b['rtf']['p50'], digits=3)} | {_fmt(b['throughput_x_realtime'], 'x', 1)} real time")
    cells = [c for c in (s, b) if c]
    parts.append(f"underruns {sum(c['streams_with_underrun'] for c in cells)}/{sum(c['streams'] for c in cells)}"
                 f" | errors {sum(c['errors'] for c in cells)}")
    return " | ".join(parts)


# ------------------------------------------------------------------------------- one engine


def bench_engine(setup: Setup, cfg: Config, services: Services, root: Path) -> dict[str, Any]:
    key = setup.key
    out: dict[str, Any] = {"engine": setup.engine, "title": setup.title, "scenarios": list(setup.scenarios),
                           "levels": list(cfg.levels[key]), "modes": {}}
    if setup.engine == "replay":
        out["settings"] = {"rtf": cfg.replay_rtf if setup.paced else 0.0, "seconds_per_unit": 0.2}
    if setup.in_process:
        log(f"{key}: in-process baseline")
    out["in_process"] = in_process(setup, cfg)
    log(f"{key}: starting {' and '.join(cfg.modes)} stacks")
    stacks = start_stacks(setup, cfg, services, root)
    try:
        log(f"{key}: stacks ready; cloning ({cfg.clones} per mode)")
        clones = clone_latencies(stacks, cfg.clones)
        for mode, stack in stacks.items():
            out["modes"][mode] = {"clone_ms": clones[mode], "levels": {}}
            # warm the path (first request: feature load, lazy imports); not recorded
            asyncio.run(run_streams(stack.ws, PROMPT_ID, WARM_UP, "burst", 1, seed=0))
        log(f"{key}: clone p50 " + ", ".join(f"{m} {c['p50']:.0f} ms" for m, c in clones.items()))
        for level in cfg.levels[key]:
            others = machine.other_pytest_processes()
            acc = {mode: {sc: {"records": [], "batches": [], "cpu": 0.0, "client": 0.0} for sc in setup.scenarios}
                   for mode in stacks}
            for r in range(cfg.rounds(key, level)):
                for scenario in setup.scenarios:
                    for mode, stack in stacks.items():
                        pids = stack_pids(stack, services)
                        cpu0, client0 = sum(map(machine.cpu_seconds, pids)), time.process_time()
                        batch = asyncio.run(run_streams(stack.ws, PROMPT_ID, TEXTS, scenario, level, seed=r,
                                                        piece_delay=cfg.piece_delay))
                        a = acc[mode][scenario]
                        a["cpu"] += sum(map(machine.cpu_seconds, pids)) - cpu0
                        a["client"] += time.process_time() - client0
                        a["records"] += batch
                        a["batches"].append(batch)
                        if not stack.alive():
                            raise RuntimeError(f"{mode} stack died:\n{stack.log_tail()}")
            others += machine.other_pytest_processes()
            if others:
                log(f"note: other test processes ran during {key} x{level}: these numbers are noisy")
                SHARED_LEVELS.append(f"{key} x{level}")
            for mode in stacks:
                cell = {sc: summarize(a["records"], a["batches"], a["cpu"], a["client"])
                        for sc, a in acc[mode].items()}
                cell["shared_machine"] = bool(others)
                cell["records"] = {sc: [rec.as_dict() for rec in a["records"]] for sc, a in acc[mode].items()}
                out["modes"][mode]["levels"][str(level)] = cell
                log(progress_line(key, mode, level, cell))
    finally:
        for stack in stacks.values():
            stack.stop()
    return out


# ------------------------------------------------------------------------------- verdicts


def _cell(results: dict[str, Any], engine: str, mode: str, level: int, scenario: str) -> dict[str, Any] | None:
    try:
        return results["engines"][engine]["modes"][mode]["levels"][str(level)][scenario]
    except KeyError:
        return None


def comparisons(results: dict[str, Any]) -> dict[str, Any]:
    """Distributed minus embedded, and the platform's overhead against the in-process baseline."""
    out: dict[str, Any] = {"distributed_adds": {}, "platform_overhead": {}}
    for engine, data in results["engines"].items():
        adds = {}
        for level in data["levels"]:
            e_s, e_b = (_cell(results, engine, "embedded", level, sc) for sc in ("stream", "burst"))
            d_s, d_b = (_cell(results, engine, "distributed", level, sc) for sc in ("stream", "burst"))
            if not (e_b and d_b):
                continue
            adds[str(level)] = {
                "ttfa_clause_p50_ms": _diff(d_s["ttfa_clause_ms"]["p50"], e_s["ttfa_clause_ms"]["p50"])
                if e_s and d_s else None,
                "ttfa_clause_noise_ms": _paired_noise(results, engine, level, "stream", "ttfa_clause")
                if e_s and d_s else None,
                "ttfa_done_p50_ms": _diff(d_b["ttfa_done_ms"]["p50"], e_b["ttfa_done_ms"]["p50"]),
                "ttfa_done_noise_ms": _paired_noise(results, engine, level, "burst", "ttfa_done"),
                "per_chunk_ms": _diff(d_b["gap_ms"]["mean"], e_b["gap_ms"]["mean"]),
                "per_chunk_noise_ms": _paired_noise(results, engine, level, "burst", "gap"),
                "end_after_done_p50_ms": _diff(d_b["end_after_done_ms"]["p50"], e_b["end_after_done_ms"]["p50"]),
            }
        if adds:
            out["distributed_adds"][engine] = adds
        overhead: dict[str, Any] = {}
        for mode in data["modes"]:
            for level in data["levels"]:
                base = data.get("in_process", {}).get(str(level))
                api = _cell(results, engine, mode, level, "burst")
                if not (base and api and base.get("throughput_x_realtime") and api.get("throughput_x_realtime")):
                    continue
                ratio = api["throughput_x_realtime"] / base["throughput_x_realtime"]
                overhead.setdefault(mode, {})[str(level)] = {
                    "throughput_in_process_x": base["throughput_x_realtime"],
                    "throughput_api_x": api["throughput_x_realtime"],
                    "ratio": round(ratio, 4),
                    "overhead_pct": round(100 * (1 - ratio), 2),
                    "ttfa_added_p50_ms": _diff(api["ttfa_done_ms"]["p50"], base["ttfa_done_ms"]["p50"]),
                    "rtf_in_process_p50": base["rtf"]["p50"],
                    "rtf_api_p50": api["rtf"]["p50"],
                }
        if overhead:
            out["platform_overhead"][engine] = overhead
    return out


def _samples(records: list[dict[str, Any]], what: str) -> dict[tuple[str, int], list[float]]:
    """Values (ms) of ``what`` grouped by what they should not vary with: the text (and chunk)."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in records:
        if r.get("error") or r.get("end_at") is None or not r.get("arrivals"):
            continue
        arrivals = r["arrivals"]
        if what == "gap":
            for k, (a, b) in enumerate(zip(arrivals, arrivals[1:], strict=False)):
                groups.setdefault((r["text_id"], k), []).append(1000 * (b - a))
        else:
            since = r["first_clause_at"] if what == "ttfa_clause" else r["done_at"]
            if since is not None and arrivals[0] >= since:
                groups.setdefault((r["text_id"], 0), []).append(1000 * (arrivals[0] - since))
    return groups


def _paired_noise(results: dict[str, Any], engine: str, level: int, scenario: str, what: str) -> float | None:
    """About two standard errors of distributed minus embedded for ``what``, comparing like with
    like (the same text, the same chunk), so the texts' own differences are not counted as noise."""
    try:
        cells = [results["engines"][engine]["modes"][m]["levels"][str(level)]["records"][scenario]
                 for m in ("embedded", "distributed")]
    except KeyError:
        return None
    e, d = (_samples(c, what) for c in cells)
    keys = [k for k in e if k in d and len(e[k]) > 1 and len(d[k]) > 1]
    if not keys:
        return None
    var = sum(statistics.variance(e[k]) / len(e[k]) + statistics.variance(d[k]) / len(d[k]) for k in keys)
    return round(2 * math.sqrt(var) / len(keys), 1)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    comp = results["comparisons"]

    def add(name: str, target: str, measured: float | None, met: bool | None, note: str = "",
            noise: float | None = None) -> None:
        rows.append({"target": name, "goal": target, "measured": measured, "noise": noise, "met": met, "note": note})

    cell = _cell(results, "kokoro", "embedded", 1, "stream")
    if cell:
        value = cell["ttfa_clause_ms"]["p50"]
        add("TTFA p50, short first clause, 1 stream, embedded, kokoro", "<= 400 ms", value,
            value is not None and value <= 400, "from the first complete clause sent, word by word")
    for engine in ("kokoro", "replay", "replay-paced"):
        adds = comp["distributed_adds"].get(engine, {}).get("1")
        if not adds:
            continue
        for key, label in (("ttfa_clause", "from first clause"), ("ttfa_done", "from done")):
            v = adds.get(f"{key}_p50_ms")
            if v is not None:
                add(f"distributed adds to TTFA p50 ({label}), 1 stream, {engine}", "<= 15 ms", v, v <= 15,
                    noise=adds.get(f"{key}_noise_ms"))
        v = adds["per_chunk_ms"]
        add(f"distributed adds per chunk, 1 stream, {engine}", "<= 5 ms", v, v is not None and v <= 5,
            "mean gap between chunks, text at once", noise=adds.get("per_chunk_noise_ms"))
    for mode, levels in comp["platform_overhead"].get("replay-paced", {}).items():
        worst_level, worst = max(levels.items(), key=lambda kv: kv[1]["overhead_pct"])
        add(f"platform overhead of throughput, replay-paced, {mode} (worst: x{worst_level})", "<= 5 %",
            worst["overhead_pct"], worst["overhead_pct"] <= 5)
    replay = results["engines"].get("replay", {})
    for mode in replay.get("modes", {}):
        top = max(replay["levels"])
        cells = [c for c in (_cell(results, "replay", mode, top, sc) for sc in SCENARIOS) if c]
        if top < 16 or not cells:
            continue
        bad = sum(c["streams_with_underrun"] + c["errors"] for c in cells)
        headroom = [c["min_headroom_ms"] for c in cells if c["min_headroom_ms"] is not None]
        add(f">= 16 concurrent streams without underruns, replay, {mode}", f"0 streams with one at x{top}", bad,
            bad == 0, f"{sum(c['streams'] for c in cells)} streams; least audio buffered when a chunk arrived: "
            f"{min(headroom) if headroom else '-'} ms")
    return rows


# ------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="fewer levels and runs (under 3 minutes)")
    preset.add_argument("--smoke", action="store_true", help="a few seconds: replay engine, embedded, 1-2 streams")
    parser.add_argument("--name", help="results file name (default: bench, bench-quick, bench-smoke)")
    parser.add_argument("--engines", help=f"comma-separated setups, of {','.join(SETUPS)}")
    parser.add_argument("--modes", help=f"comma-separated, of {','.join(MODES)}")
    parser.add_argument("--levels", help="concurrency levels for every engine, e.g. 1,4,16")
    parser.add_argument("--samples", type=int, help="streams per level and scenario to aim for (every engine)")
    parser.add_argument("--replay-rtf", type=float, help="replay engine pacing, seconds slept per audio second")
    parser.add_argument("--clones", type=int, help="POST /clone calls per mode")
    parser.add_argument("--results-dir", type=Path, help=f"default {RESULTS_DIR.relative_to(REPO)}")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    cfg = PRESETS["quick" if args.quick else "smoke" if args.smoke else "full"]
    cfg = replace(cfg, levels=dict(cfg.levels), samples=dict(cfg.samples))
    if args.name:
        cfg.name = args.name
    if args.engines:
        cfg.engines = tuple(e for e in args.engines.split(",") if e)
        for engine in cfg.engines:
            if engine not in SETUPS:
                parser.error(f"unknown setup {engine!r}; known: {', '.join(SETUPS)}")
            cfg.levels.setdefault(engine, (1,))
            cfg.samples.setdefault(engine, 2)
    if args.modes:
        cfg.modes = tuple(m for m in args.modes.split(",") if m)
        if not set(cfg.modes) <= set(MODES):
            parser.error(f"modes are {MODES}")
    if args.levels:
        levels = tuple(sorted({int(x) for x in args.levels.split(",") if x}))
        cfg.levels = {engine: levels for engine in cfg.engines}
    if args.samples:
        cfg.samples = {engine: args.samples for engine in cfg.engines}
    if args.replay_rtf is not None:
        cfg.replay_rtf = args.replay_rtf
    if args.clones is not None:
        cfg.clones = args.clones
    if args.results_dir:
        cfg.results_dir = args.results_dir
    cfg.plots = not args.no_plots
    return cfg


def run(cfg: Config) -> dict[str, Any]:
    global _started
    _started = time.monotonic()
    SHARED_LEVELS.clear()
    from bench.encoders import encoder_costs

    others = machine.other_pytest_processes()
    results: dict[str, Any] = {
        "name": cfg.name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "shared": {"other_test_processes_at_start": others, "load_average_at_start": machine.load_average()},
        "config": {"engines": list(cfg.engines), "modes": list(cfg.modes),
                   "levels": {e: list(cfg.levels[e]) for e in cfg.engines},
                   "rounds": {e: {str(n): cfg.rounds(e, n) for n in cfg.levels[e]} for e in cfg.engines},
                   "replay_rtf": cfg.replay_rtf, "piece_delay_ms": [1000 * x for x in cfg.piece_delay],
                   "texts": dict(TEXTS), "audio_format": "pcm", "sample_rate": 24000,
                   "distributed_workers": cfg.distributed_workers},
        "engines": {},
    }
    log(f"{cfg.name}: {machine.summary_line(results['machine'])}")
    if others:
        log(f"note: {len(others)} other test process(es) running: the machine is shared, timings will be noisy")
    log("encoder cost per format (in-process)")
    results["encoder_cost"] = encoder_costs(seconds=cfg.encoder_seconds, repeats=cfg.encoder_repeats)
    with tempfile.TemporaryDirectory(prefix="tts-bench-") as tmp:
        services = Services(Path(tmp))
        try:
            for engine in cfg.engines:
                results["engines"][engine] = bench_engine(SETUPS[engine], cfg, services, Path(tmp))
        finally:
            services.stop()
    results["comparisons"] = comparisons(results)
    results["targets"] = targets(results)
    results["shared"]["load_average_at_end"] = machine.load_average()
    results["shared"]["levels_with_other_test_processes"] = list(SHARED_LEVELS)
    results["duration_s"] = round(time.monotonic() - _started, 1)
    return results


def write(results: dict[str, Any], cfg: Config) -> dict[str, Path]:
    from bench import report

    table_file = "README-table.md" if cfg.name == "bench" else f"README-table-{cfg.name}.md"
    plots = (lambda: report.plots(results, cfg.results_dir, cfg.name)) if cfg.plots else None
    return save_results(results, cfg.results_dir, cfg.name, report.markdown(results), table_file, plots)


def save_results(results: dict[str, Any], results_dir: Path, name: str, table: str, table_file: str,
                 plots: Callable[[], dict[str, Path]] | None) -> dict[str, Path]:
    """``<name>.json`` (atomically), the markdown table and the plots; prints the table."""
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": results_dir / f"{name}.json"}
    # Results are for sharing (committed, published): readable by all, as the PNGs and tables are.
    atomic_write(paths["json"], json.dumps(results, indent=1, ensure_ascii=False).encode("utf-8"), mode=0o644)
    paths["table"] = results_dir / table_file
    paths["table"].write_text(table)
    if plots is not None:
        paths.update(plots())
    print()
    print(table)
    for kind, path in paths.items():
        log(f"wrote {kind}: {path}")
    return paths


def main(argv: list[str] | None = None) -> dict[str, Path]:
    cfg = parse_args(argv)
    return write(unwinding_on_sigterm(lambda: run(cfg)), cfg)


def unwinding_on_sigterm(job: Callable[[], T]) -> T:
    """Run ``job``; on SIGTERM (make interrupted, say) unwind normally, so servers, Redis,
    S3 and the databases started here are stopped and dropped instead of left running."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return job()
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
