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
import math
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.json_text import loads_text
from core.zip_members import BadMember, read_member

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineCapabilities:
    languages: tuple[str, ...]
    #: instructions the engine honours, e.g. ("speed", "pitch", "volume"); empty = ignores instruct_text
    instruct: tuple[str, ...] = ()
    #: a short, honest sentence on what cloning does with this engine
    cloning: str = ""


#: Features are small (Kokoro's are under 1 MB); these bounds hold for every engine, so a
#: hand-made or corrupt blob (a zip bomb inside the .npz, a huge array header, deep JSON)
#: is refused before it can take memory, on the tone-cache load path and the store read path.
MAX_FEATURE_BYTES = 8 * 1024 * 1024
MAX_FEATURE_ARRAYS = 32
MAX_FEATURE_META_BYTES = 256 * 1024
MAX_ARRAY_NDIM = 4
#: dtype kinds an array may have: bool, signed and unsigned integers, floats (never objects)
_ARRAY_KINDS = "biuf"
_NPY_HEADER_MAX = 4096


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
    def from_bytes(cls, data: bytes, max_bytes: int = MAX_FEATURE_BYTES) -> Features:
        """Parse an .npz of features; ValueError for anything that is not small, finite features.

        Sizes are checked before anything is expanded: the archive's, each member's as declared
        (zipfile never yields more than that), and each array's from its header. Floats must be
        finite, metadata a shallow JSON object of finite numbers (core.json_text).
        """
        if len(data) > max_bytes:
            raise ValueError(f"features are {len(data)} bytes, over the {max_bytes}-byte limit")
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
            raise ValueError(f"features are not an .npz archive: {exc}") from None
        with archive:
            infos = _checked_members(archive.infolist(), max_bytes)
            raw_meta = None
            arrays: dict[str, np.ndarray] = {}
            for name, info in infos.items():
                array = _parse_npy(_read_member(archive, info), name)
                if name == cls._META_KEY:
                    raw_meta = array
                else:
                    arrays[name] = array
        if raw_meta is None:
            raise ValueError("features have no metadata")
        return cls(meta=_parse_meta(raw_meta), arrays=arrays)


def _checked_members(infos: list[zipfile.ZipInfo], max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by array name, after checking names, count and declared sizes."""
    if len(infos) > MAX_FEATURE_ARRAYS + 1:
        raise ValueError(f"features hold {len(infos)} arrays, more than {MAX_FEATURE_ARRAYS}")
    declared = sum(info.file_size for info in infos)
    if declared > max_bytes:
        raise ValueError(f"features expand to {declared} bytes, over the {max_bytes}-byte limit")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename[:-4] if info.filename.endswith(".npy") else ""
        if not name or len(name) > 64 or not name.replace("_", "a").isalnum() or not name.isascii():
            raise ValueError(f"features hold an unexpected member {info.filename[:80]!r}")
        if name in members:
            raise ValueError(f"features hold {name!r} twice")
        members[name] = info
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return read_member(archive, info)
    except BadMember as exc:
        raise ValueError(f"features member {info.filename[:80]!r} is {exc}") from None


def _parse_npy(data: bytes, name: str) -> np.ndarray:
    """One .npy array of plain numbers, its size checked against its header before it is copied."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf, max_header_size=_NPY_HEADER_MAX)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf, max_header_size=_NPY_HEADER_MAX)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, TypeError, SyntaxError, OverflowError, MemoryError, RecursionError) as exc:
        raise ValueError(f"features array {name!r} has a bad header: {exc}") from None
    if dtype.hasobject or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"features array {name!r} must hold plain numbers, not {dtype}")
    if len(shape) > MAX_ARRAY_NDIM:
        raise ValueError(f"features array {name!r} has {len(shape)} dimensions, more than {MAX_ARRAY_NDIM}")
    if any(n < 0 for n in shape):
        raise ValueError(f"features array {name!r} has a negative dimension in {shape}")
    count = math.prod(shape)
    offset = buf.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise ValueError(f"features array {name!r} holds {len(data) - offset} bytes, not the "
                         f"{count * dtype.itemsize} its shape {shape} needs")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    array = array.reshape(shape, order="F" if fortran else "C").copy()
    if dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"features array {name!r} contains NaN or infinite values")
    return array


def _parse_meta(raw: np.ndarray) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError("features metadata must be UTF-8 JSON bytes")
    if raw.size > MAX_FEATURE_META_BYTES:
        raise ValueError(f"features metadata is {raw.size} bytes, over the {MAX_FEATURE_META_BYTES}-byte limit")
    try:
        meta = loads_text(raw.tobytes())
    except ValueError as exc:
        raise ValueError(f"features metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError("features metadata is not an object")
    check_finite_json(meta, "features metadata")
    return meta


def check_finite_json(value: Any, what: str) -> None:
    """ValueError if a parsed JSON value holds NaN or an infinity (``json`` accepts both
    literals; strict clients and PostgreSQL do not). Depth is already bounded by loads_text."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} holds a number that is not finite")
    elif isinstance(value, dict):
        for item in value.values():
            check_finite_json(item, what)
    elif isinstance(value, list):
        for item in value:
            check_finite_json(item, what)


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

    def check_features(self, features: Features) -> object:
        """The engine's feature schema: raise ValueError unless ``features`` are this engine's
        and every array and value it reads has the shape, range and finiteness it needs.

        Run on features from outside (a tone-cache bundle) before they are stored, so a bad
        bundle is refused at load instead of failing every later stream."""

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


#: OPTIONAL engine method: ``background_work()``, a context manager under which the calling
#: thread's model runs wait while live streams use the model (refinement, batch items).
#: Engines without it run such work at the same priority as streams.
BACKGROUND_METHOD = "background_work"


def background_work(engine: object) -> AbstractContextManager[object]:
    """The engine's background-priority block, or a block that changes nothing."""
    method = getattr(engine, BACKGROUND_METHOD, None)
    return method() if callable(method) else nullcontext()


def clause_cost(engine: object) -> tuple[float, float] | None:
    """The optional ``clause_cost`` attribute: (seconds per clause, seconds per segmenter unit)
    the engine takes to synthesize a clause on this machine, alone, once it has loaded; the
    job's clause pacing (synthesis/pacing.py) starts from it. None when the engine does not say."""
    cost = getattr(engine, "clause_cost", None)
    if (isinstance(cost, tuple) and len(cost) == 2
            and all(isinstance(x, (int, float)) and 0 <= x < 60 for x in cost)):
        return float(cost[0]), float(cost[1])
    return None


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
