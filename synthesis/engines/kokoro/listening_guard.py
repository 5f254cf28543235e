"""Refinement's listening guard: a speech recogniser hears a candidate voice say fixed sentences.

The style search (engines/kokoro_refine.py) optimises speaker similarity on the prompt's
transcript, one language. Measured with Whisper, its best styles sometimes kept English
clear but garbled Mandarin (CER 0.10 -> 0.35 and worse), which its signal-level guard
(duration, voicing, flatness) cannot hear. This guard lets the recogniser listen: the
voice speaks a few fixed sentences in both languages (not the benchmark's, not a
transcript), and a candidate is refused when, in either language, it is heard with an
error rate more than :data:`TOLERANCE` above the starting voice's.

It is optional: it needs the recogniser of ``requirements-quality.txt`` (faster-whisper and
the Whisper base wheels). Without it, :func:`listener` returns None and refinement
keeps its signal-level guard alone. One recogniser is loaded per process, on first use,
with one thread (refinement is background work), and decodes greedily with a token limit:
a garbled voice costs no more to hear than a clear one.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synthesis.engines.kokoro.error_rates import error_rate

log = logging.getLogger(__name__)

#: what the voice says for the recogniser, per language (short: each costs a synthesis and a decode)
SENTENCES: dict[str, tuple[str, ...]] = {
    "zh": ("这本书讲的是一个小村子里的故事。", "他每天坐地铁上班，路上要走一个小时。"),
    "en": ("The library closes early on Sundays, so we should hurry.",),
}
#: tokens the recogniser may write per sentence (a garbled voice must not make it ramble on)
MAX_TOKENS = 64
#: how much worse (error rate, per language) than the starting voice a candidate may be heard
TOLERANCE = 0.08

#: (synthesize(text, features) -> audio at sample_rate)
Speaker = Callable[[str, Any], np.ndarray]
#: (audio, sample_rate, language) -> heard text
Listener = Callable[[np.ndarray, int, str], str]


class ListeningGuard:
    def __init__(self, speak: Speaker, sample_rate: int, listen: Listener,
                 sentences: dict[str, tuple[str, ...]] = SENTENCES, tolerance: float = TOLERANCE) -> None:
        self.speak = speak
        self.sample_rate = sample_rate
        self.listen = listen
        self.sentences = sentences
        self.tolerance = tolerance

    def errors(self, features: Any, languages: Sequence[str] | None = None) -> dict[str, float]:
        """Error rate per language (all, or ``languages``) of the recogniser on ``features``
        speaking the sentences."""
        rates: dict[str, float] = {}
        for language, sentences in self.sentences.items():
            if languages is not None and language not in languages:
                continue
            pairs = [(text, self.listen(self.speak(text, features), self.sample_rate, language)) for text in sentences]
            rate = error_rate(pairs, language)
            rates[language] = round(1.0 if rate is None else rate, 4)
        return rates

    def problem(self, start: dict[str, float], candidate: dict[str, float]) -> str | None:
        """Why ``candidate`` is heard worse than ``start`` (None: it passes)."""
        for language, rate in candidate.items():
            if rate > start.get(language, 0.0) + self.tolerance:
                return f"heard {language} error {start.get(language, 0.0):.2f} -> {rate:.2f}"
        return None

    def pick(self, start: Any, candidates: Sequence[Any], should_stop: Callable[[], bool] | None = None,
             ) -> tuple[Any | None, dict[str, Any]]:
        """The first of ``candidates`` (features, best first) heard about as well as ``start``.

        Returns it (None when none passes or when stopped) and what was heard, for the voice's metrics.
        """
        base = self.errors(start)
        report: dict[str, Any] = {"start": base, "checked": 0, "refused": []}
        for candidate in candidates:
            if should_stop is not None and should_stop():
                report["stopped"] = True
                break
            heard = self.errors(candidate)
            report["checked"] += 1
            problem = self.problem(base, heard)
            if problem is None:
                report["chosen"] = heard
                return candidate, report
            report["refused"].append(problem)
        return None, report


_lock = threading.Lock()
_listener: Listener | None = None
_unavailable = False


def listener(cache_dir: Path) -> Listener | None:
    """The process's recogniser (loaded once), or None when it is not installed or failed to load."""
    global _listener, _unavailable
    with _lock:
        if _listener is None and not _unavailable:
            from synthesis.engines.kokoro import recogniser

            if not recogniser.weights_installed():
                _unavailable = True
                log.info("refinement's listening guard is off: the recogniser is not installed "
                         "(requirements-quality.txt)")
            else:
                try:
                    transcriber = recogniser.Transcriber(threads=1, cache_dir=cache_dir)
                    _listener = lambda audio, rate, language: transcriber.transcribe_quickly(
                        audio, rate, language, MAX_TOKENS)
                except Exception as exc:  # noqa: BLE001 - a broken install must not break refinement
                    _unavailable = True
                    log.warning("refinement's listening guard is off: the recogniser did not load (%s)", exc)
        return _listener
