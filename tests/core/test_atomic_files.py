"""Atomic file writes: all or nothing, private unless asked otherwise."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.atomic_files import atomic_write, atomic_writer


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_by_default_and_shareable_when_asked(tmp_path: Path) -> None:
    atomic_write(tmp_path / "voice.bin", b"features")
    atomic_write(tmp_path / "bench.json", b"{}", mode=0o644)
    assert mode_of(tmp_path / "voice.bin") == 0o600
    assert mode_of(tmp_path / "bench.json") == 0o644
    assert (tmp_path / "bench.json").read_bytes() == b"{}"


def test_a_failed_write_leaves_the_old_content_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
