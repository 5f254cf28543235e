from __future__ import annotations

import warnings

import pytest

from core.env import ConfigError, envbool, envint, envpaths, renamed


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


def test_a_renamed_variable_keeps_working_under_its_old_name_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TTS_CLONE_MAX_WAITING", raising=False)
    monkeypatch.setenv("TTS_CLONE_QUEUE", "3")
    with pytest.warns(FutureWarning, match="TTS_CLONE_QUEUE is deprecated: set TTS_CLONE_MAX_WAITING"):
        assert envint(renamed("TTS_CLONE_MAX_WAITING", "TTS_CLONE_QUEUE"), 8) == 3
    monkeypatch.setenv("TTS_CLONE_MAX_WAITING", "5")  # the new name wins, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert envint(renamed("TTS_CLONE_MAX_WAITING", "TTS_CLONE_QUEUE"), 8) == 5
    monkeypatch.delenv("TTS_CLONE_QUEUE")
    monkeypatch.delenv("TTS_CLONE_MAX_WAITING")
    assert envint(renamed("TTS_CLONE_MAX_WAITING", "TTS_CLONE_QUEUE"), 8) == 8
