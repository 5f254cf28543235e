"""The stock voices' reference embeddings, computed once at install time.

Cloning compares the prompt's speaker embedding with every stock voice's (kokoro.py). Each
one costs a synthesis of the reference sentence and an embedding: for Kokoro's 54 voices,
39 s on an idle 2-core machine and over six minutes on a busy one, far too long for a
server's first start. ``make install`` runs ``python -m synthesis.engines.kokoro.voice_embeddings``
after the voice pack: it writes the table next to the pack, with the key it was computed for
(the model's sha256, every voice's style -- the pack's content --, the speaker encoder's
weights' sha256, the reference sentences, the ONNX Runtime version; see
``KokoroEngine._reference_key``). The engine uses the file only when that key is the key of
what it has loaded: a stale or damaged file is never trusted, the table is computed again
(into TTS_ENGINE_DIR/cache), and running this step again rewrites the file.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from core.atomic_files import atomic_writer
from synthesis.engines.kokoro import voice_pack

log = logging.getLogger(__name__)

FILE_NAME = "kokoro-voice-embeddings.npz"
#: one row per stock voice: its speaker embedding (256) and its median F0 in Hz
COLUMNS = 257


def default_path(pack: Path | None = None) -> Path:
    """Next to the voice pack (``pack``, else where the pack is read from)."""
    return (pack if pack is not None else voice_pack.default_path()).with_name(FILE_NAME)


def read(path: Path, key: str, names: list[str]) -> np.ndarray | None:
    """The table in ``path`` when it was computed for ``key`` and exactly these voices;
    None when the file is missing, stale or damaged (the caller computes the table)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            stored_key = str(npz["key"])
            stored_names = [str(n) for n in npz["names"]]
            table = np.array(npz["table"], dtype=np.float32)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("voice embeddings %s unreadable (%s): computing them", path, exc)
        return None
    if stored_key != key or stored_names != names:
        log.warning("voice embeddings %s were computed for another model, voice pack or speaker encoder: "
                    "computing them (python -m synthesis.engines.kokoro.voice_embeddings rewrites the file)", path)
        return None
    if table.shape != (len(names), COLUMNS) or not np.all(np.isfinite(table)):
        log.warning("voice embeddings %s hold a %s table, not %d finite rows: computing them",
                    path, table.shape, len(names))
        return None
    return table


def write(path: Path, key: str, names: list[str], table: np.ndarray) -> None:
    with atomic_writer(path, mode=0o644) as f:
        np.savez(f, key=np.array(key), names=np.array(names), table=np.asarray(table, np.float32))


def install(dest: Path, pack: Path | None = None, threads: int | None = None) -> tuple[Path, bool]:
    """Load the engine (a throwaway engine directory; ``dest`` is used if current) and write its
    reference table to ``dest`` unless it is there already. Returns (dest, whether it was written)."""
    from synthesis.engines.kokoro.engine import KokoroEngine

    with tempfile.TemporaryDirectory(prefix="tts-embeddings-") as tmp:
        engine = KokoroEngine(Path(tmp), threads=threads or os.cpu_count() or 1,
                              voice_pack=pack, voice_embeddings=dest)
        engine.load()
        key, names, table = engine.reference_table
        if read(dest, key, names) is not None:
            return dest, False
        write(dest, key, names, table)
        return dest, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compute the stock voices' reference embeddings once, "
                                                 "so a server's first start does not.")
    parser.add_argument("--pack", type=Path, default=voice_pack.default_path(),
                        help="the voice pack whose voices are embedded (%(default)s)")
    parser.add_argument("--dest", type=Path, help=f"where to write the table (default: {FILE_NAME} next to the pack)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: every CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    dest, written = install(args.dest or default_path(args.pack), args.pack, args.threads)
    print(f"voice embeddings: {dest} {'written' if written else 'already current'} "
          f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
