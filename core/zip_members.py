"""Reading one member of an untrusted zip archive: never more than it declares."""
from __future__ import annotations

import zipfile
import zlib


class BadMember(ValueError):
    """The member cannot be read, or is not the size its entry declares."""


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, read up to one byte past its declared size (so a member that
    inflates beyond it is caught, and memory stays bounded by the declared size)."""
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError,
            zlib.error) as exc:
        raise BadMember(f"unreadable: {exc}") from None
    if len(data) != info.file_size:
        raise BadMember("not the size it declares")
    return data
