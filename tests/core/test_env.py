from __future__ import annotations

import pytest

from core.env import ConfigError, envbool, envint, envpaths


def test_typed_env_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "7")
    monkeypatch.setenv("X_PATHS", "/tmp:/var")
    assert envbool("X_BOOL", False) is True
    assert envint("X_INT", 1) == 7
    assert envpaths("X_PATHS") is not None and len(envpaths("X_PATHS")) == 2
    assert envpaths("X_UNSET_PATHS") is None


@pytest.mark.parametrize("name,value,reader", [("B", "maybe", envbool), ("I", "seven", envint)])
def test_bad_values_fail_loudly(monkeypatch: pytest.MonkeyPatch, name: str, value: str, reader) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        reader(name, 0)


def test_minimums_are_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("N", "0")
    with pytest.raises(ConfigError):
        envint("N", 5, minimum=1)
