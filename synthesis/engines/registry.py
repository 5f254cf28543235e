"""Engine registry: names to factories, and the one engine instance per process.

Loading takes seconds (minutes without the install-time voice embeddings, on a busy
machine): it runs in one background thread, and requests that need the engine before it is
warm are answered NotReady (503 + Retry-After, close 4503) at once instead of waiting.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable

from core.errors import NotReady
from synthesis.engines.base import Engine

log = logging.getLogger(__name__)

#: engine name -> "module:Class". Each class takes keyword settings (see _build).
ENGINES: dict[str, str] = {
    "kokoro": "synthesis.engines.kokoro.engine:KokoroEngine",
    "replay": "synthesis.engines.replay:ReplayEngine",  # benchmarks and tests only: replays pre-made audio
}

_lock = threading.Lock()
_engine: Engine | None = None
_loader: threading.Thread | None = None
_loading_since = 0.0


def engine_class(name: str) -> Callable[..., Engine]:
    try:
        target = ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown TTS_ENGINE {name!r}; known: {', '.join(sorted(ENGINES))}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _build() -> Engine:
    from django.conf import settings

    cls = engine_class(settings.TTS_ENGINE)
    return cls(
        data_dir=settings.TTS_ENGINE_DIR,
        threads=settings.TTS_ENGINE_THREADS,
        concurrency=settings.TTS_ENGINE_CONCURRENCY,
        device=settings.TTS_ENGINE_DEVICE,
    )


def get_engine() -> Engine:
    """The process's engine, built on first use; call ``load()`` before synthesising."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = _build()
    return _engine


def get_loaded_engine() -> Engine:
    """The process's engine, loaded: blocks until it is (startup threads, background work)."""
    engine = get_engine()
    engine.load()
    return engine


def start_loading() -> None:
    """Load the engine in a background thread, unless one is loading it already; a load that
    failed (logged) is tried again by the next call."""
    global _loader, _loading_since
    with _lock:
        if _loader is not None and _loader.is_alive():
            return
        _loading_since = time.monotonic()
        _loader = threading.Thread(target=_load, name="engine-preload", daemon=True)
        _loader.start()


def _load() -> None:
    try:
        get_loaded_engine()
    except Exception:
        log.exception("the engine failed to load; the next request that needs it tries again")


def get_ready_engine() -> Engine:
    """The process's engine if it is warm; else NotReady at once (and loading starts, if it
    had not: TTS_PRELOAD_ENGINE off loads on first use)."""
    engine = get_engine()
    if getattr(engine, "warm", False):
        return engine
    start_loading()
    raise NotReady(f"the {engine.name} engine is still loading (for {time.monotonic() - _loading_since:.0f} s); "
                   f"retry in a few seconds")


def engine_status() -> dict[str, object]:
    engine = _engine
    if engine is None:
        return {"engine": None, "loaded": False, "warm": False}
    return {
        "engine": engine.name,
        "loaded": bool(getattr(engine, "loaded", False)),
        "warm": bool(getattr(engine, "warm", False)),
        # where the model runs, once loaded: ONNX Runtime's first provider ("CUDAExecutionProvider", ...)
        "device": (getattr(engine, "providers", None) or [None])[0],
    }
