from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import ApiError, Forbidden, NotFound, PayloadTooLarge
from voices.safe_paths import MAX_PATH_CHARS, read_client_file, resolve_client_path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "a.bin").write_bytes(b"inside")
    (tmp_path / "secret.bin").write_bytes(b"outside")
    return base


def test_file_inside_root(root: Path) -> None:
    got = resolve_client_path(str(root / "sub" / "a.bin"), [root], must_exist=True)
    assert got == (root / "sub" / "a.bin").resolve()
    assert read_client_file(str(root / "sub" / "a.bin"), [root], max_bytes=100) == b"inside"


def test_relative_paths_are_taken_from_the_first_root(root: Path) -> None:
    assert read_client_file("sub/a.bin", [root], max_bytes=100) == b"inside"
    assert read_client_file("./sub/../sub/a.bin", [root], max_bytes=100) == b"inside"


@pytest.mark.parametrize("raw", ["../secret.bin", "sub/../../secret.bin", "{root}/sub/../../secret.bin"])
def test_dotdot_cannot_leave_the_root(root: Path, raw: str) -> None:
    with pytest.raises(Forbidden) as info:
        read_client_file(raw.format(root=root), [root], max_bytes=100)
    assert info.value.status == 403


def test_symlink_out_of_the_root_is_refused(root: Path) -> None:
    (root / "link.bin").symlink_to(root.parent / "secret.bin")
    (root / "dirlink").symlink_to(root.parent)
    for raw in (root / "link.bin", root / "dirlink" / "secret.bin"):
        with pytest.raises(Forbidden):
            read_client_file(str(raw), [root], max_bytes=100)


def test_symlink_within_the_root_is_fine(root: Path) -> None:
    (root / "alias.bin").symlink_to(root / "sub" / "a.bin")
    assert read_client_file(str(root / "alias.bin"), [root], max_bytes=100) == b"inside"


def test_root_given_through_a_symlink(root: Path, tmp_path: Path) -> None:
    (tmp_path / "root-link").symlink_to(root)
    assert read_client_file(str(root / "sub" / "a.bin"), [tmp_path / "root-link"], max_bytes=100) == b"inside"


def test_any_of_several_roots(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    assert read_client_file(str(root / "sub" / "a.bin"), [other, root], max_bytes=100) == b"inside"


def test_outside_gives_the_same_answer_whether_or_not_it_exists(root: Path) -> None:
    messages = []
    for name in ("secret.bin", "no-such-file"):
        with pytest.raises(Forbidden) as info:
            resolve_client_path(str(root.parent / name), [root], must_exist=True)
        messages.append(info.value.message)
    assert messages[0] == messages[1]


def test_open_mode_reads_anything_regular(root: Path) -> None:
    assert read_client_file(str(root.parent / "secret.bin"), None, max_bytes=100) == b"outside"


def test_empty_roots_turn_paths_off(root: Path) -> None:
    with pytest.raises(Forbidden, match="not allowed"):
        resolve_client_path(str(root / "sub" / "a.bin"), (), must_exist=True)


def test_missing_file(root: Path) -> None:
    with pytest.raises(NotFound) as info:
        read_client_file(str(root / "nope.wav"), [root], max_bytes=100)
    assert info.value.status == 404


def test_must_exist_false_allows_new_paths_inside_only(root: Path) -> None:
    assert resolve_client_path(str(root / "new" / "x.bin"), [root], must_exist=False) == (
        root.resolve() / "new" / "x.bin"
    )
    with pytest.raises(Forbidden):
        resolve_client_path(str(root / ".." / "new.bin"), [root], must_exist=False)


@pytest.mark.timeout(10)
def test_dev_zero_is_refused() -> None:
    with pytest.raises(ApiError, match="not a regular file"):
        read_client_file("/dev/zero", None, max_bytes=100)


@pytest.mark.timeout(10)
def test_fifo_is_refused_without_blocking(root: Path) -> None:
    fifo = root / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ApiError, match="not a regular file"):
        read_client_file(str(fifo), [root], max_bytes=100)
    with pytest.raises(ApiError, match="not a regular file"):
        resolve_client_path(str(fifo), [root], must_exist=False)


def test_directory_is_refused_as_a_file(root: Path) -> None:
    with pytest.raises(ApiError, match="directory"):
        read_client_file(str(root / "sub"), [root], max_bytes=100)


def test_directory_kind(root: Path) -> None:
    assert resolve_client_path(str(root / "sub"), [root], must_exist=True, kind="dir") == (root / "sub").resolve()
    assert resolve_client_path(str(root), [root], must_exist=True, kind="dir") == root.resolve()
    with pytest.raises(ApiError, match="not a directory"):
        resolve_client_path(str(root / "sub" / "a.bin"), [root], must_exist=True, kind="dir")


def test_nul_byte(root: Path) -> None:
    with pytest.raises(ApiError, match="NUL") as info:
        resolve_client_path(str(root / "sub" / "a.bin") + "\x00.wav", [root], must_exist=True)
    assert info.value.status == 400


def test_over_long_paths(root: Path) -> None:
    with pytest.raises(ApiError, match="too long"):
        resolve_client_path("/" + "a" * MAX_PATH_CHARS, None, must_exist=True)
    with pytest.raises(ApiError) as info:  # one component longer than NAME_MAX
        resolve_client_path(str(root / ("b" * 300)), [root], must_exist=True)
    assert info.value.status == 400


def test_home_expansion(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(root))
    assert read_client_file("~/sub/a.bin", [root], max_bytes=100) == b"inside"


def test_size_cap(root: Path) -> None:
    path = root / "big.bin"
    path.write_bytes(b"x" * 1001)
    with pytest.raises(PayloadTooLarge) as info:
        read_client_file(str(path), [root], max_bytes=1000)
    assert info.value.status == 413
    assert read_client_file(str(path), [root], max_bytes=1001) == b"x" * 1001
