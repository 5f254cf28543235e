"""Turning a path a client sent into a path the server may touch.

Generic on purpose: used for clone prompt files and for tone-cache locations.

``roots=None`` is *open mode*: any path the process can read, like the original
servers, except the server's own data (:mod:`voices.server_paths`), which is refused in
every mode with the same answer as a path outside the roots. Otherwise the real path (symlinks resolved, ``..`` collapsed) must lie inside
one of ``roots``; ``roots=()`` therefore turns client paths off entirely. Relative
paths are taken relative to the first root (open mode: the working directory).

Limitation: a symlink swapped into an *intermediate* directory between the check and
the open is not caught (that needs ``openat2(RESOLVE_BENEATH)``); the final component
is opened with ``O_NOFOLLOW`` and re-checked with ``fstat``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from core.errors import ApiError, Forbidden, NotFound, PayloadTooLarge
from voices.server_paths import private_area

MAX_PATH_CHARS = 4096
#: One answer for every path a caller may not use, so it tells nothing about what is there.
OUTSIDE = "path is outside the directories this server allows"

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in after the check must not block
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def resolve_client_path(
    raw: str,
    roots: Sequence[Path] | None,
    *,
    must_exist: bool,
    kind: Literal["file", "dir"] = "file",
) -> Path:
    """Resolve ``raw`` and check it against ``roots``.

    Whatever exists at the path must be of ``kind`` (a regular file, or a directory);
    devices, FIFOs and sockets are always refused.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ApiError("path must be a non-empty string")
    if "\x00" in raw:
        raise ApiError("path contains a NUL byte")
    if len(raw) > MAX_PATH_CHARS:
        raise ApiError(f"path is too long (more than {MAX_PATH_CHARS} characters)")
    if roots is not None and len(roots) == 0:
        raise Forbidden("local file paths are not allowed on this server")

    candidate = Path(os.path.expanduser(raw))
    if not candidate.is_absolute():
        base = Path(roots[0]) if roots else Path.cwd()
        candidate = base / candidate
    real = Path(os.path.realpath(candidate))

    private = private_area()
    if (roots is not None and not any(_is_inside(real, root) for root in roots)) or private.contains(real):
        raise Forbidden(OUTSIDE)

    try:
        st = os.stat(real)
    except FileNotFoundError:
        if must_exist:
            raise NotFound(f"file not found: {raw}") from None
        return real
    except PermissionError:
        raise Forbidden(f"path is not accessible: {raw}") from None
    except OSError as exc:  # ENAMETOOLONG, ELOOP, ENOTDIR, ...
        raise ApiError(f"cannot use path {raw!r}: {exc.strerror or exc}") from None
    if private.is_database(st):  # a hard link to the database
        raise Forbidden(OUTSIDE)
    _check_kind(st.st_mode, raw, kind)
    return real


def read_client_file(raw: str, roots: Sequence[Path] | None, *, max_bytes: int) -> bytes:
    """Read a client-named regular file, refusing anything over ``max_bytes``."""
    path = resolve_client_path(raw, roots, must_exist=True, kind="file")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise NotFound(f"file not found: {raw}") from None
    except PermissionError:
        raise Forbidden(f"file is not readable: {raw}") from None
    except OSError as exc:  # ELOOP: the last component became a symlink
        raise ApiError(f"cannot open {raw!r}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        if private_area().is_database(st):  # swapped in after the check
            raise Forbidden(OUTSIDE)
        _check_kind(st.st_mode, raw, "file")
        if st.st_size > max_bytes:
            raise PayloadTooLarge(_too_large(max_bytes))
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may still grow while we read it
            chunk = fh.read(min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge(_too_large(max_bytes))
    return b"".join(chunks)


def _is_inside(real: Path, root: Path) -> bool:
    root_real = Path(os.path.realpath(os.path.expanduser(root)))
    return real == root_real or real.is_relative_to(root_real)


def _check_kind(mode: int, raw: str, kind: str) -> None:
    if stat.S_ISDIR(mode):
        if kind != "dir":
            raise ApiError(f"path is a directory, not a file: {raw}")
    elif stat.S_ISREG(mode):
        if kind != "file":
            raise ApiError(f"path is a file, not a directory: {raw}")
    else:
        raise ApiError(f"path is not a regular file (device, FIFO or socket): {raw}")


def _too_large(max_bytes: int) -> str:
    return f"file is too large (limit {max_bytes} bytes)"
