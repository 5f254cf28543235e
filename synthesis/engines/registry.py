"""Engine registry: names to factories, and the one engine instance per process."""
from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from synthesis.engines.base import Engine

#: engine name -> "module:Class". Each class takes keyword settings (see _build).
ENGINES: dict[str, str] = {
    "kokoro": "synthesis.engines.kokoro:KokoroEngine",
    "replay": "synthesis.engines.replay:ReplayEngine",  # benchmarks and tests only: replays pre-made audio
}

_lock = threading.Lock()
_engine: Engine | None = None


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
    engine = get_engine()
    engine.load()
    return engine


def engine_status() -> dict[str, object]:
    engine = _engine
    if engine is None:
        return {"engine": None, "loaded": False, "warm": False}
    return {
        "engine": engine.name,
        "loaded": bool(getattr(engine, "loaded", False)),
        "warm": bool(getattr(engine, "warm", False)),
    }
