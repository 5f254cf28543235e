"""Typed readers for environment variables that fail loudly on a bad value."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit


class ConfigError(ValueError):
    pass


def renamed(new: str, old: str) -> str:
    """The name to read a renamed variable under: ``new``, or ``old`` where only the old one
    is set (it keeps working, with a warning that says the new name)."""
    if os.environ.get(new) is None and os.environ.get(old) is not None:
        warnings.warn(f"{old} is deprecated: set {new} instead", FutureWarning, stacklevel=2)
        return old
    return new


def envstr(name: str, default: str) -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def envfloat(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def envpaths(name: str) -> tuple[Path, ...] | None:
    """A ``:``-separated list of directories, or None when unset (meaning: no confinement)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    return tuple(Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip())


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def postgres_settings(url: str) -> dict[str, object]:
    """Django DATABASES entry for ``postgres://user:password@host:port/dbname``."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"} or not parts.path.strip("/"):
        raise ConfigError(f"TTS_DATABASE_URL must look like postgres://user@host:5432/dbname, got {url!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.strip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }
