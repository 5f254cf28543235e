"""The server's own files, which no client-supplied path may name, in any mode.

Open mode lets a client name any path the process can read, as the original servers did,
but never the server's own data: reading SQLite's database file through a second file
descriptor and closing it drops the process's POSIX locks on it, and the next writer then
corrupts the database; the feature store holds every tenant's prompt audio; the engine
directory holds the model. So everything under ``TTS_DATA_DIR`` is private except the
tenants' tone-cache area, and so are the database files, the feature store and the engine
files wherever settings put them. Database files are also matched by inode, so a hard link
to them elsewhere is refused too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from synthesis.engines.kokoro import voice_pack

_SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True)
class PrivateArea:
    #: real paths of directories and files that are private with everything beneath them
    private: tuple[Path, ...]
    #: the one private directory that has a public part (the data dir) and that part
    data_dir: Path
    public_in_data_dir: Path
    #: (st_dev, st_ino) of the database files
    database_inodes: frozenset[tuple[int, int]]

    def contains(self, real: Path) -> bool:
        """Whether the resolved path ``real`` is (or lies inside) the server's own data."""
        if any(_inside(real, p) for p in self.private):
            return True
        return _inside(real, self.data_dir) and not _inside(real, self.public_in_data_dir)

    def is_database(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) in self.database_inodes


def private_area() -> PrivateArea:
    """Computed from the settings on each call: a few ``realpath`` calls, no I/O beyond that."""
    private = [settings.TTS_ENGINE_DIR, Path(settings.STATIC_ROOT), voice_pack.default_path()]
    store = settings.TTS_FEATURE_STORE.strip()
    if store and "://" not in store:
        private.append(Path(store))
    database_files = _database_files()
    private.extend(database_files)
    return PrivateArea(
        private=tuple(_real(p) for p in private),
        data_dir=_real(settings.TTS_DATA_DIR),
        public_in_data_dir=_real(settings.TTS_TENANT_CACHE_ROOT),
        database_inodes=frozenset(_inodes(database_files)),
    )


def _database_files() -> list[Path]:
    files = []
    for database in settings.DATABASES.values():
        if "sqlite" in database.get("ENGINE", "") and str(database.get("NAME", "")) not in ("", ":memory:"):
            files.extend(Path(f"{database['NAME']}{suffix}") for suffix in _SQLITE_SIDE_FILES)
    return files


def _inodes(paths: list[Path]) -> list[tuple[int, int]]:
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        found.append((st.st_dev, st.st_ino))
    return found


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def _inside(real: Path, root: Path) -> bool:
    return real == root or real.is_relative_to(root)
