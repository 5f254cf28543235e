"""Kokoro clone refinement: a bounded search of the style vector, after the quick clone.

The quick clone (``KokoroEngine.extract_features``) blends the bundled voices nearest to
the prompt. Refinement starts from that blend and runs a (1+1) evolution strategy with
step-size adaptation (the 1/5th success rule) over a few directions of the 256-d style:

- the top principal axes of how the bundled voices differ from each other, separately
  for the decoder half of the style (timbre) and the prosody half, each moved in units
  of its own spread across the voices, bounded to a trust region;
- the speaking rate.

The objective is the speaker-embedding cosine between the prompt and the candidate
speaking the prompt's transcript (the same similarity cloning reports). A candidate
must also pass a cheap intelligibility guard against the starting point: about the same
speech time, voicing and spectral flatness (a garbled style buzzes, hisses or runs
long). When the optional recogniser is installed, the search's best styles are then
listened to (synthesis/engines/kokoro/listening_guard.py): best first, back along the path the search
took, the first one Whisper hears about as well as the starting voice, in Mandarin and
English, is kept. The style is only replaced when the similarity gained at least
``MIN_GAIN``; a loudness gain matching the prompt (BS.1770) is stored either way.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from synthesis.engines.base import Features
from synthesis.engines.kokoro import listening_guard, loudness
from synthesis.engines.kokoro.pitch import estimate_f0
from synthesis.engines.kokoro.speaker_embedding import cosine_similarity
from synthesis.text.segmenter import units

if TYPE_CHECKING:
    from synthesis.engines.kokoro.engine import KokoroEngine
    from synthesis.engines.kokoro.instruct import InstructParams

log = logging.getLogger(__name__)

#: principal axes searched per style half (decoder/timbre, prosody)
AXES_PER_HALF = 6
#: trust region, in standard deviations of the bundled voices along each axis
BOUND = 2.5
SIGMA_START = 0.6
SIGMA_MIN = 0.05
#: log-speed change per unit step
SPEED_STEP = 0.08
MAX_STEPS = 200
#: consecutive failed candidates before giving up
PATIENCE = 14
#: similarity the search must gain before the style is replaced
MIN_GAIN = 0.005
#: the transcript spoken per candidate is cut to about this many units (cost bound)
MAX_OBJECTIVE_UNITS = 40
SEED = 1234

#: intelligibility guard, relative to the starting point
#: (the bundled voices differ by up to ~15 % in speech time, voicing 0.59-0.87 and median
#: flatness 0.0004-0.0023 on the same sentence; garbled styles lose voicing or hiss)
DURATION_RATIO = (0.8, 1.25)
VOICED_KEEP = 0.65
FLATNESS_RATIO = 5.0
FLATNESS_FLOOR = 0.008

#: listening guard: improved styles along the search's path that are listened to, at most
LISTEN_CHECKS = 4
#: share of the budget kept for listening (when the recogniser is installed)
LISTEN_SHARE = 0.25
#: heard worse than this in the transcript's other language (error rate), the envelope
#: conversion there is tried weaker, at these multiples of its strength in turn, until one
#: is heard this well (the stock voice is heard at about 0.1-0.2 on these sentences)
OTHER_LANGUAGE_ERROR = 0.2
OTHER_STRENGTH_STEPS = (0.5, 0.0)
#: none heard that well: the one heard best, a weaker one only when at least this much better
OTHER_LANGUAGE_MARGIN = 0.05

#: output loudness: the prompt's loudness, clamped to this range (LUFS)
TARGET_LUFS_RANGE = (-28.0, -14.0)
MAX_GAIN_DB = 12.0
GAIN_RANGE = (10 ** (-MAX_GAIN_DB / 20) - 1e-3, 10 ** (MAX_GAIN_DB / 20) + 1e-3)


# ---------------------------------------------------------------------- output gain


def output_gain(meta: dict[str, Any]) -> float:
    """The loudness gain stored by refinement (1.0 when absent); ValueError when invalid."""
    gain = meta.get("gain", 1.0)
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not GAIN_RANGE[0] <= gain <= GAIN_RANGE[1]:
        raise ValueError(f"features 'gain' must be a number in [{GAIN_RANGE[0]:.3f}, {GAIN_RANGE[1]:.3f}], got {gain!r}")
    return float(gain)


def with_output_gain(params: InstructParams, features: Features) -> InstructParams:
    gain = output_gain(features.meta)
    return params if gain == 1.0 else replace(params, volume=params.volume * gain)


# ---------------------------------------------------------------------- intelligibility guard


@dataclass(frozen=True)
class SpeechStats:
    #: seconds of 20 ms frames within 35 dB of the loudest
    active_s: float
    #: voiced time over active time
    voiced: float
    #: median spectral flatness of the active frames (0 tonal .. 1 white noise)
    flatness: float


def speech_stats(audio: np.ndarray, sample_rate: int) -> SpeechStats:
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    frame = max(1, sample_rate // 50)
    n = len(x) // frame
    if n == 0:
        return SpeechStats(0.0, 0.0, 1.0)
    frames = x[: n * frame].reshape(n, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    if rms.max() <= 0:
        return SpeechStats(0.0, 0.0, 1.0)
    active = rms > rms.max() * 10 ** (-35 / 20)
    active_s = float(active.sum() * frame / sample_rate)
    voiced_s = float(np.count_nonzero(estimate_f0(x, sample_rate) > 0) * 0.01)
    power = np.abs(np.fft.rfft(frames[active] * np.hanning(frame), axis=1))[:, 1:] ** 2 + 1e-12
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    return SpeechStats(active_s, min(1.0, voiced_s / max(active_s, 1e-6)), float(np.median(flatness)))


def guard_problem(start: SpeechStats, candidate: SpeechStats) -> str | None:
    """Why ``candidate`` looks less intelligible than ``start`` (None: it passes)."""
    if start.active_s <= 0 or candidate.active_s <= 0:
        return "no speech"
    ratio = candidate.active_s / start.active_s
    if not DURATION_RATIO[0] <= ratio <= DURATION_RATIO[1]:
        return f"duration x{ratio:.2f}"
    if candidate.voiced < start.voiced * VOICED_KEEP:
        return f"voicing {start.voiced:.2f} -> {candidate.voiced:.2f}"
    if candidate.flatness > max(start.flatness * FLATNESS_RATIO, FLATNESS_FLOOR):
        return f"flatness {start.flatness:.3f} -> {candidate.flatness:.3f}"
    return None


# ---------------------------------------------------------------------- search space


@dataclass(frozen=True)
class StyleBasis:
    #: (k, 256): unit directions, each within one half of the style
    directions: np.ndarray
    #: (k,): the bundled voices' standard deviation along each direction
    scales: np.ndarray


_basis_cache: dict[bytes, StyleBasis] = {}


def style_basis(voices: list[np.ndarray], per_half: int = AXES_PER_HALF) -> StyleBasis:
    """Principal axes of the voices' deviations from their mean, row by row, per style half."""
    stack = np.stack(voices).astype(np.float64)  # (voices, rows, 256)
    key = stack.shape[0].to_bytes(2, "little") + np.float32(stack.sum()).tobytes() + per_half.to_bytes(2, "little")
    if key in _basis_cache:
        return _basis_cache[key]
    deviations = (stack - stack.mean(axis=0)).reshape(-1, stack.shape[-1])
    half = stack.shape[-1] // 2
    directions, scales = [], []
    for lo in (0, half):
        part = deviations[:, lo : lo + half]
        _, s, vt = np.linalg.svd(part, full_matrices=False)
        for i in range(min(per_half, len(s))):
            d = np.zeros(stack.shape[-1])
            d[lo : lo + half] = vt[i]
            directions.append(d)
            scales.append(s[i] / np.sqrt(len(part)))
    basis = StyleBasis(np.array(directions), np.array(scales))
    _basis_cache[key] = basis
    return basis


# ---------------------------------------------------------------------- the search


@dataclass
class Candidate:
    x: np.ndarray
    features: Features
    audio: np.ndarray
    sim: float
    stats: SpeechStats


def objective_text(text: str, limit: int = MAX_OBJECTIVE_UNITS) -> str:
    """The transcript's first sentences, up to about ``limit`` units (at least one sentence)."""
    from synthesis.engines.kokoro.engine import _sentences

    picked: list[str] = []
    total = 0
    for sentence in _sentences(text):
        n = units(sentence)
        if picked and total + n > limit:
            break
        picked.append(sentence)
        total += n
    return " ".join(picked)


class StyleSearch:
    def __init__(self, engine: KokoroEngine, target: np.ndarray, text: str, features: Features) -> None:
        self.engine = engine
        self.target = target
        self.text = text
        self.base = features
        self.style, self.pitch, self.speed = engine.check_features(features)
        self.basis = style_basis([engine._voices[n] for n in engine.stock_voices()])
        self.dims = len(self.basis.scales) + 1
        self.evaluations = 0

    def features_at(self, x: np.ndarray) -> Features:
        k = len(self.basis.scales)
        offset = (x[:k] * self.basis.scales) @ self.basis.directions
        style = (self.style + offset[None, :]).astype(np.float32)
        lo, hi = _speed_range()
        speed = float(np.clip(self.speed * np.exp(SPEED_STEP * x[k]), lo, hi))
        meta = {**self.base.meta, "speed": round(speed, 4)}
        arrays = {**self.base.arrays, "style": style}
        return Features(meta=meta, arrays=arrays)

    def evaluate(self, x: np.ndarray) -> Candidate | None:
        self.evaluations += 1
        features = self.features_at(x)
        audio = self.engine.synthesize(self.text, features)
        try:
            embedding = self.engine._encoder.embed(audio, self.engine.sample_rate)
        except ValueError:
            return None
        sim = cosine_similarity(self.target, embedding)
        return Candidate(x, features, audio, sim, speech_stats(audio, self.engine.sample_rate))


def _speed_range() -> tuple[float, float]:
    from synthesis.engines.kokoro.engine import SPEED_RANGE

    return SPEED_RANGE


def refine(engine: KokoroEngine, audio: np.ndarray, sample_rate: int, text: str, features: Features,
           budget_s: float, should_stop: Callable[[], bool] | None = None, max_steps: int = MAX_STEPS) -> Features | None:
    """Refined features, or None when there is nothing to refine with (no encoder, no transcript)."""
    started = time.monotonic()
    engine.load()
    if engine._encoder is None or not engine._g2p.phonemize(text or ""):
        return None
    spoken = objective_text(text)
    try:
        target = engine._encoder.embed(np.asarray(audio, np.float32), sample_rate)
    except ValueError:
        return None
    search = StyleSearch(engine, target, spoken, features)
    start = search.evaluate(np.zeros(search.dims))
    if start is None:
        return None
    guard = _listening_guard(engine)
    search_budget = budget_s * (1 - LISTEN_SHARE) if guard is not None else budget_s
    best = start
    path = [start]  # each improvement, in order
    rng = np.random.default_rng(SEED)
    sigma, fails, rejected, steps = SIGMA_START, 0, 0, 0
    eval_s = time.monotonic() - started
    while steps < max_steps and fails < PATIENCE and sigma >= SIGMA_MIN:
        if time.monotonic() - started + eval_s > search_budget or (should_stop is not None and should_stop()):
            break
        t0 = time.monotonic()
        x = np.clip(best.x + sigma * rng.standard_normal(search.dims), -BOUND, BOUND)
        candidate = search.evaluate(x)
        steps += 1
        problem = "no embedding" if candidate is None else guard_problem(start.stats, candidate.stats)
        if candidate is not None and problem is None and candidate.sim > best.sim:
            best, fails = candidate, 0
            path.append(candidate)
            sigma *= 1.5
        else:
            rejected += problem is not None
            fails += 1
            sigma *= 1.5 ** -0.25
        eval_s = max(eval_s * 0.5, time.monotonic() - t0)
    chosen = best if best.sim - start.sim >= MIN_GAIN else start
    heard: dict[str, Any] | None = None
    chosen_features = chosen.features
    if guard is not None:
        def out_of_time() -> bool:  # a candidate not listened to in time is not taken
            return time.monotonic() - started > budget_s or (should_stop is not None and should_stop())

        if chosen is not start:
            chosen, heard = _listen(guard, start, path, out_of_time)
        chosen_features, heard = _tune_other_language(guard, chosen.features, heard, out_of_time)
    improved = chosen is not start
    meta = {**chosen_features.meta}
    meta.update(loudness_meta(audio, sample_rate, chosen.audio, engine.sample_rate))
    meta.update({
        "refined": True,
        "style_changed": improved,
        "sim_before": round(start.sim, 4),
        "sim_after": round(chosen.sim, 4),
        "sim_best": round(best.sim, 4),
        "steps": steps,
        "rejected": rejected,
        "listened": heard if guard is not None else "recogniser not installed",
        "seconds": round(time.monotonic() - started, 2),
    })
    log.info("refined: similarity %.4f -> %.4f (%s) in %d steps, %d rejected, %.1f s", start.sim, chosen.sim,
             "style replaced" if improved else "style kept", steps, rejected, meta["seconds"])
    return Features(meta=meta, arrays=chosen_features.arrays)


def _listening_guard(engine: KokoroEngine) -> listening_guard.ListeningGuard | None:
    hear = listening_guard.listener(engine.data_dir / "cache" / "whisper-base")
    if hear is None:
        return None

    def listen(audio: np.ndarray, sample_rate: int, language: str) -> str:
        engine.yield_to_live_streams()  # the recogniser shares the cores with live streams
        return hear(audio, sample_rate, language)

    return listening_guard.ListeningGuard(engine.synthesize, engine.sample_rate, listen)


def _listen(guard: listening_guard.ListeningGuard, start: Candidate, path: list[Candidate],
            should_stop: Callable[[], bool] | None) -> tuple[Candidate, dict[str, Any]]:
    """The best improvement on ``path`` the recogniser hears about as well as ``start`` (else ``start``).

    At most LISTEN_CHECKS are listened to: the best, then earlier ones spread back along the
    path (nearer the starting voice, so likelier to pass)."""
    improved = [c for c in path[1:] if c.sim - start.sim >= MIN_GAIN]
    picks = sorted({round(i * (len(improved) - 1) / max(1, LISTEN_CHECKS - 1)) for i in range(LISTEN_CHECKS)},
                   reverse=True) if improved else []
    order = [improved[i] for i in picks]
    chosen, report = guard.pick(start.features, [c.features for c in order], should_stop)
    for candidate in order:
        if candidate.features is chosen:
            report["sim"] = round(candidate.sim, 4)
            return candidate, report
    return start, report


def _tune_other_language(guard: listening_guard.ListeningGuard, features: Features, heard: dict[str, Any] | None,
                         out_of_time: Callable[[], bool]) -> tuple[Features, dict[str, Any] | None]:
    """Lower the envelope conversion's strength in the transcript's other language where the
    recogniser hears the voice poorly there: to the strongest of the weaker ones it hears well
    enough, else to the one it hears best (ties: the stronger).

    The conversion moves the voice towards the prompt's spectra, which were spoken in the
    transcript's language; in the other one it can blur sounds that language needs (measured:
    Mandarin CER 0.35 at the cross-language strength, 0.16 at half of it, for one voice)."""
    from synthesis.engines.kokoro.engine import other_language_strength

    envelope = features.meta.get("envelope")
    if not isinstance(envelope, dict) or envelope.get("language") not in ("zh", "en"):
        return features, heard
    other = "en" if envelope["language"] == "zh" else "zh"
    report = dict(heard) if heard is not None else {}
    heard_now = report.get("chosen") or report.get("start")
    if heard_now is None:
        if out_of_time():
            return features, heard
        heard_now = guard.errors(features)
        report["start"] = heard_now
    rate = heard_now.get(other)
    if rate is None or rate <= OTHER_LANGUAGE_ERROR:
        return features, report
    current = other_language_strength(envelope)
    best_rate, best_strength, best_features = rate, current, features
    tried = {round(current, 3): rate}
    for factor in OTHER_STRENGTH_STEPS:
        if out_of_time():
            break
        strength = round(current * factor, 3)
        trial = Features(meta={**features.meta, "envelope": {**envelope, "other_strength": strength}},
                         arrays=features.arrays)
        tried[strength] = guard.errors(trial, [other])[other]
        if tried[strength] <= OTHER_LANGUAGE_ERROR:  # heard well enough: the strongest such is kept
            best_rate, best_strength, best_features = tried[strength], strength, trial
            break
        if tried[strength] < best_rate - OTHER_LANGUAGE_MARGIN:
            best_rate, best_strength, best_features = tried[strength], strength, trial
    report["other_language"] = {"language": other, "strength": best_strength,
                                "heard": {str(k): v for k, v in tried.items()}}
    return best_features, report


def loudness_meta(prompt: np.ndarray, prompt_rate: int, voice: np.ndarray, voice_rate: int) -> dict[str, Any]:
    """The output gain that brings ``voice`` to the prompt's integrated loudness (EBU R128), bounded."""
    prompt_lufs = loudness.integrated_loudness(prompt, prompt_rate)
    voice_lufs = loudness.integrated_loudness(voice, voice_rate)
    if not (np.isfinite(prompt_lufs) and np.isfinite(voice_lufs)):
        return {"gain": 1.0, "loudness": {"prompt_lufs": None, "voice_lufs": None, "target_lufs": None}}
    target = float(np.clip(prompt_lufs, *TARGET_LUFS_RANGE))
    gain_db = float(np.clip(target - voice_lufs, -MAX_GAIN_DB, MAX_GAIN_DB))
    return {
        "gain": round(10 ** (gain_db / 20), 4),
        "loudness": {"prompt_lufs": round(prompt_lufs, 2), "voice_lufs": round(voice_lufs, 2),
                     "target_lufs": round(target, 2)},
    }
