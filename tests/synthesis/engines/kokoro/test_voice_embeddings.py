"""The stock voices' reference table computed at install time (synthesis/engines/kokoro/voice_embeddings.py):
used only when it was computed for what the engine loads; a stale or damaged one is recomputed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthesis.engines.kokoro import voice_embeddings
from synthesis.engines.kokoro.engine import KokoroEngine

BUNDLED = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]


def table(rows: int, value: float = 0.5) -> np.ndarray:
    return np.full((rows, voice_embeddings.COLUMNS), value, np.float32)


def test_a_table_is_read_back_only_for_its_own_key_and_voices(tmp_path: Path) -> None:
    path = tmp_path / voice_embeddings.FILE_NAME
    voice_embeddings.write(path, "key-a", BUNDLED, table(5))
    assert np.array_equal(voice_embeddings.read(path, "key-a", BUNDLED), table(5))
    assert voice_embeddings.read(path, "key-b", BUNDLED) is None  # other model, pack or encoder
    assert voice_embeddings.read(path, "key-a", BUNDLED[:4]) is None
    assert voice_embeddings.read(path, "key-a", list(reversed(BUNDLED))) is None  # rows belong to names
    assert voice_embeddings.read(tmp_path / "missing.npz", "key-a", BUNDLED) is None


@pytest.mark.parametrize("damage", ["nan", "shape", "truncated", "garbage", "no key"])
def test_a_damaged_table_is_never_trusted(tmp_path: Path, damage: str) -> None:
    path = tmp_path / voice_embeddings.FILE_NAME
    if damage == "nan":
        bad = table(5)
        bad[2, 7] = np.nan
        voice_embeddings.write(path, "key", BUNDLED, bad)
    elif damage == "shape":
        voice_embeddings.write(path, "key", BUNDLED, np.zeros((5, 256), np.float32))
    elif damage == "truncated":
        voice_embeddings.write(path, "key", BUNDLED, table(5))
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04 not an npz")
    else:
        np.savez(path, names=np.array(BUNDLED), table=table(5))
    assert voice_embeddings.read(path, "key", BUNDLED) is None


def test_a_stale_install_time_table_is_recomputed_and_a_current_one_used(tmp_path: Path) -> None:
    """Five voices (no voice pack) keep this quick. A table left by another encoder or pack
    (its key differs) must not reach cloning; the install step rewrites it; an engine on a
    fresh engine directory then takes it as it is, computing nothing."""
    pack = tmp_path / "no-pack.npz"  # absent: the engine has its five bundled voices
    dest = voice_embeddings.default_path(pack)
    stale = table(5, 0.25)
    voice_embeddings.write(dest, "computed-with-other-weights", BUNDLED, stale)

    engine = KokoroEngine(tmp_path / "engine-a", threads=2, voice_pack=pack)
    assert engine.voice_embeddings == dest
    engine.load()
    key, names, used = engine.reference_table
    assert names == BUNDLED and key != "computed-with-other-weights"
    assert not np.allclose(used, stale)
    assert all(abs(np.linalg.norm(used[i, :256]) - 1.0) < 1e-3 for i in range(5))  # real embeddings
    assert list((tmp_path / "engine-a" / "cache").glob("kokoro-voice-embeddings-*.npy"))  # computed here

    assert voice_embeddings.install(dest, pack=pack, threads=2) == (dest, True)
    rewritten = voice_embeddings.read(dest, key, names)
    assert rewritten is not None and np.allclose(rewritten, used, atol=1e-4)
    assert voice_embeddings.install(dest, pack=pack, threads=2) == (dest, False)  # current: kept

    fresh = KokoroEngine(tmp_path / "engine-b", threads=2, voice_pack=pack)
    fresh.load()
    assert np.array_equal(fresh.reference_table[2], rewritten)
    assert not list((tmp_path / "engine-b" / "cache").glob("kokoro-voice-embeddings-*.npy"))  # nothing computed
    assert np.array_equal(fresh._voice_embeddings["jm_kumo"], rewritten[BUNDLED.index("jm_kumo"), :256])
