"""The engine interface: the one contract between the platform and a TTS model.

An engine is loaded once per process and then shared by every request. It turns a
prompt (audio + transcript) into *features* once, at clone time, and later streams
audio for text given those features. The platform never looks inside features: it
stores them, checksums them, and hands them back.
"""
from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineCapabilities:
    languages: tuple[str, ...]
    #: instructions the engine honours, e.g. ("speed", "pitch", "volume"); empty = ignores instruct_text
    instruct: tuple[str, ...] = ()
    #: a short, honest sentence on what cloning does with this engine
    cloning: str = ""


@dataclass
class Features:
    """Speaker features: JSON-able metadata plus named float arrays.

    Serialised as an .npz without pickle, so loading a bundle never executes code.
    """

    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    _META_KEY = "__meta__"

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        payload = {k: np.ascontiguousarray(v) for k, v in self.arrays.items()}
        meta = json.dumps(self.meta, sort_keys=True, ensure_ascii=False).encode("utf-8")
        payload[self._META_KEY] = np.frombuffer(meta, dtype=np.uint8)
        np.savez(buf, **payload)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files if k != cls._META_KEY}
            if cls._META_KEY not in npz.files:
                raise ValueError("features have no metadata")
            meta = json.loads(npz[cls._META_KEY].tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("features metadata is not an object")
        return cls(meta=meta, arrays=arrays)


class StreamStopped(Exception):
    """Raised out of ``Engine.stream`` when its ``stop`` signal was set mid-synthesis."""


class StopSignal(threading.Event):
    """Set when nobody wants a stream's audio any more (the client left, the job ended).

    Besides polling ``is_set()`` between clauses, an engine can register a callback that
    aborts the work in flight (an ONNX Runtime run), so a long clause is not finished for
    a client who is gone and the worker is free for the next stream at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._callbacks_lock = threading.Lock()
        self._next_token = 0

    def set(self) -> None:
        with self._callbacks_lock:
            super().set()
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one failing abort must not keep the others from running
                log.exception("a stop callback failed")

    def on_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` once when the signal is set (at once if it already is).

        Returns a function that unregisters it; call it when the work it would abort is over.
        """
        with self._callbacks_lock:
            if not self.is_set():
                token = self._next_token
                self._next_token += 1
                self._callbacks[token] = callback
                return lambda: self._forget(token)
        callback()
        return lambda: None

    def _forget(self, token: int) -> None:
        with self._callbacks_lock:
            self._callbacks.pop(token, None)


@runtime_checkable
class Engine(Protocol):
    #: registry name, e.g. "kokoro"
    name: str
    #: version of the feature format; features of another version must be re-derived
    feature_version: str
    #: sample rate of the audio that stream() yields
    sample_rate: int
    capabilities: EngineCapabilities
    #: set by load(): weights are in memory / a warm-up synthesis has run
    loaded: bool
    warm: bool

    def load(self) -> None:
        """Load weights and warm up. Idempotent; called once per process."""

    def extract_features(self, audio: np.ndarray, sample_rate: int, text: str) -> Features:
        """Compute speaker features from a mono float32 prompt in [-1, 1] and its transcript."""

    def stream(self, clauses: Iterable[str], features: Features, instruct: str | None,
               stop: StopSignal | None = None) -> Iterator[np.ndarray]:
        """Yield mono float32 audio at ``sample_rate`` for each clause as it arrives.

        ``clauses`` may block while the client is still typing; the engine must start
        speaking the first clause before the iterable is exhausted. Once ``stop`` is set
        the engine should give up promptly, mid-clause if it can, by raising StreamStopped.
        """


#: OPTIONAL engine method, not part of the Protocol (engines without it never refine)::
#:
#:     def refine_features(self, audio: np.ndarray, sample_rate: int, text: str, features: Features,
#:                         budget_s: float, should_stop: Callable[[], bool] | None = None) -> Features | None
#:
#: A slower search for better features, run in the background after a quick clone while
#: the voice is "refining" (synthesis keeps using ``features`` meanwhile). It must return
#: within about ``budget_s`` seconds, poll ``should_stop`` (the voice was removed or
#: replaced), and return features of the same engine and feature version, with
#: ``meta["refined"] = True`` and what it measured (e.g. ``sim_before``/``sim_after``), or
#: None when it has nothing better. The platform swaps them in atomically.
REFINE_METHOD = "refine_features"


def can_refine(engine: object) -> bool:
    """Whether ``engine`` implements the optional ``refine_features`` method."""
    return callable(getattr(engine, REFINE_METHOD, None))


def check_feature_owner(features: object, engine_name: str, feature_version: str) -> None:
    """ValueError unless ``features`` are Features made by this engine and feature version."""
    if not isinstance(features, Features):
        raise ValueError("features must be a Features object")
    meta = features.meta
    if meta.get("engine") != engine_name or meta.get("feature_version") != feature_version:
        raise ValueError(
            f"features are for {meta.get('engine')!r}/{meta.get('feature_version')!r}, "
            f"not {engine_name!r}/{feature_version!r}; clone the voice again"
        )
