"""Small statistics helpers shared by the benchmarks."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def percentile(values: Iterable[float], q: float) -> float | None:
    data = [float(v) for v in values]
    if not data:
        return None
    return float(np.percentile(np.asarray(data), q, method="linear"))


def summary(values: Iterable[float], scale: float = 1000.0, digits: int = 1) -> dict[str, float | int | None]:
    """n, p50, p95, p99, mean and max of ``values`` (seconds), times ``scale`` (default: ms)."""
    data = [float(v) * scale for v in values]
    if not data:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None, "sd": None, "max": None}
    arr = np.asarray(data)
    p50, p95, p99 = (float(np.percentile(arr, q, method="linear")) for q in (50, 95, 99))
    return {"n": len(data), "p50": round(p50, digits), "p95": round(p95, digits), "p99": round(p99, digits),
            "mean": round(float(arr.mean()), digits),
            "sd": round(float(arr.std(ddof=1)) if len(data) > 1 else 0.0, digits),
            "max": round(float(arr.max()), digits)}


def noise_band(a: dict[str, float | int | None], b: dict[str, float | int | None]) -> float | None:
    """About two standard errors of the difference of two means (summaries from ``summary``):
    a difference smaller than this is within the noise of the samples."""
    if not a.get("n") or not b.get("n") or a.get("sd") is None or b.get("sd") is None:
        return None
    return round(2 * float(np.sqrt(a["sd"] ** 2 / a["n"] + b["sd"] ** 2 / b["n"])), 1)


def median(values: Iterable[float]) -> float | None:
    return percentile(values, 50)
