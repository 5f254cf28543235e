"""The numpy Resemblyzer port against embeddings made by the original (torch) Resemblyzer.

Fixtures (see tests/fixtures/README.md): three Kokoro clips, 16 kHz mono 16-bit, two by the
voice jf_alpha and one by jm_kumo (jm_kumo_1 says the same sentences as jf_alpha_1), with
``resemblyzer==0.1.4`` embeddings and the webrtcvad masks Resemblyzer used to trim them.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import threading
import time
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soxr

from synthesis.engines.kokoro import speaker_embedding as se
from synthesis.engines.kokoro.speaker_embedding import (
    SpeakerEncoder,
    UnsafeCheckpointError,
    cosine_similarity,
    get_speaker_encoder,
    load_torch_checkpoint,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
CLIPS = ("jf_alpha_1", "jf_alpha_2", "jm_kumo_1")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0, w.getframerate()


def clip(name: str) -> tuple[np.ndarray, int]:
    return read_wav(FIXTURES / f"speaker_{name}.wav")


def reference(name: str) -> np.ndarray:
    return np.load(FIXTURES / f"speaker_{name}.resemblyzer.npy")


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


# --- agreement with the original -----------------------------------------------------

@pytest.mark.parametrize("name", CLIPS)
def test_matches_original_resemblyzer(encoder: SpeakerEncoder, name: str) -> None:
    audio, sr = clip(name)
    assert cosine_similarity(encoder.embed(audio, sr), reference(name)) > 0.99


@pytest.mark.parametrize("name", CLIPS)
def test_mel_and_network_are_exact_given_resemblyzers_silence_mask(encoder: SpeakerEncoder, name: str) -> None:
    """With webrtcvad's own trimming, the only difference left is float rounding."""
    audio, sr = clip(name)
    assert sr == se.SAMPLE_RATE
    mask = np.load(FIXTURES / f"speaker_{name}.webrtcvad_mask.npy")
    wav = se._normalize_volume(audio)
    wav = wav[: len(mask) * se._VAD_WINDOW][np.repeat(mask, se._VAD_WINDOW)]
    assert cosine_similarity(encoder.embed_preprocessed(wav), reference(name)) > 0.9999


@pytest.mark.parametrize("rate", [22050, 24000, 44100])
def test_other_sample_rates_are_resampled(encoder: SpeakerEncoder, rate: int) -> None:
    audio, sr = clip("jf_alpha_1")
    resampled = soxr.resample(audio, sr, rate, quality="HQ").astype(np.float32)
    assert cosine_similarity(encoder.embed(resampled, rate), reference("jf_alpha_1")) > 0.99


# --- output contract -----------------------------------------------------------------

def test_output_is_unit_norm_float32_and_deterministic(encoder: SpeakerEncoder) -> None:
    audio, sr = clip("jm_kumo_1")
    first = encoder.embed(audio, sr)
    assert first.shape == (256,) and first.dtype == np.float32
    assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-5
    assert np.all(first >= 0)  # ReLU before the norm
    np.testing.assert_array_equal(first, encoder.embed(audio.copy(), sr))
    np.testing.assert_array_equal(first, SpeakerEncoder().embed(audio, sr))


def test_same_voice_is_closer_than_other_voice(encoder: SpeakerEncoder) -> None:
    alpha_1, alpha_2, kumo_1 = (encoder.embed(*clip(n)) for n in CLIPS)
    same_voice = cosine_similarity(alpha_1, alpha_2)  # different sentences
    other_voice = cosine_similarity(alpha_1, kumo_1)  # same sentences
    assert same_voice > 0.85
    assert other_voice < 0.7
    assert cosine_similarity(alpha_2, kumo_1) < same_voice - 0.15


def test_long_pause_is_shortened(encoder: SpeakerEncoder) -> None:
    audio, sr = clip("jf_alpha_1")
    middle = len(audio) // 2  # inside the pause between the two sentences
    paused = np.concatenate((audio[:middle], np.zeros(3 * sr, np.float32), audio[middle:]))
    assert len(encoder.preprocess(paused, sr)) - len(encoder.preprocess(audio, sr)) < 0.2 * sr
    assert cosine_similarity(encoder.embed(paused, sr), encoder.embed(audio, sr)) > 0.98


def test_quiet_input_is_raised_to_the_same_level(encoder: SpeakerEncoder) -> None:
    """Like Resemblyzer, audio below -30 dBFS RMS is amplified to it (louder audio is left alone)."""
    audio, sr = clip("jf_alpha_1")
    quiet, quieter = encoder.embed(audio * 0.05, sr), encoder.embed(audio * 0.01, sr)
    assert cosine_similarity(quiet, quieter) > 0.9999


# --- bad input -----------------------------------------------------------------------

def test_too_short_audio_raises(encoder: SpeakerEncoder) -> None:
    audio, sr = clip("jf_alpha_1")
    with pytest.raises(ValueError, match="too short"):
        encoder.embed(audio[: int(0.4 * sr)], sr)


def test_short_sound_in_long_silence_raises(encoder: SpeakerEncoder) -> None:
    sr = 16000
    audio = np.zeros(3 * sr, np.float32)
    t = np.arange(int(0.15 * sr)) / sr
    audio[sr : sr + len(t)] = 0.3 * np.sin(2 * np.pi * 220 * t)
    with pytest.raises(ValueError, match="too short"):
        encoder.embed(audio, sr)


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros(32000, np.float32), "silent"),
        (np.zeros((32000, 2), np.float32), "mono"),
        (np.zeros(32000, np.int16), "float"),
        (np.full(32000, np.nan, np.float32), "NaN"),
    ],
)
def test_invalid_audio_raises(encoder: SpeakerEncoder, audio: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encoder.embed(audio, 16000)


# --- checkpoint loading --------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_loads_torch_checkpoints_with_views(fmt: str) -> None:
    """Made by torch.save (both formats): transposed, offset and strided views of one storage."""
    checkpoint = load_torch_checkpoint(FIXTURES / f"tiny_checkpoint_{fmt}.pt")
    assert checkpoint["step"] == 7
    state = checkpoint["model_state"]
    with np.load(FIXTURES / "tiny_checkpoint_expected.npz") as expected:
        assert list(state) == list(expected.files)
        for key in expected.files:
            assert state[key].dtype == expected[key].dtype, key
            np.testing.assert_array_equal(state[key], expected[key], err_msg=key)
    assert state["a_t"].flags.c_contiguous


def test_weights_are_found_without_importing_resemblyzer() -> None:
    path = se._default_weights_path()
    assert path.name == "pretrained.pt" and path.parent.name == "resemblyzer"
    assert "resemblyzer" not in sys.modules


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what a malicious checkpoint would contain
        return (os.system, (f"touch {self.marker}",))


def _legacy_file(body: bytes) -> bytes:
    header = b"".join(pickle.dumps(x, protocol=2) for x in (se._LEGACY_MAGIC, 1001, {"little_endian": True}))
    return header + body


def test_restricted_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"model_state": _RunsShell(marker)}, protocol=2)

    with pytest.raises(UnsafeCheckpointError, match="system"):
        se._RestrictedUnpickler(io.BytesIO(payload)).load()

    zipped = tmp_path / "evil_zip.pt"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("evil_zip/data.pkl", payload)
    with pytest.raises(UnsafeCheckpointError):
        load_torch_checkpoint(zipped)

    legacy = tmp_path / "evil_legacy.pt"
    legacy.write_bytes(_legacy_file(payload))
    with pytest.raises(UnsafeCheckpointError):
        load_torch_checkpoint(legacy)

    with pytest.raises(UnsafeCheckpointError):
        SpeakerEncoder(legacy)
    assert not marker.exists()


@pytest.mark.parametrize("target", [(eval, ("1+1",)), (getattr, (os, "system"))])
def test_restricted_unpickler_refuses_builtins(target: tuple) -> None:
    class Reduce:
        def __reduce__(self):
            return target

    with pytest.raises(UnsafeCheckpointError):
        se._RestrictedUnpickler(io.BytesIO(pickle.dumps(Reduce(), protocol=2))).load()


def _pickled_tensor(offset: int, size: tuple[int, ...], stride: tuple[int, ...], numel: int) -> bytes:
    """A legacy-format pickle of one float tensor, written opcode by opcode (no torch here)."""

    def s(text: str) -> bytes:
        return b"X" + struct.pack("<I", len(text)) + text.encode()

    def i(value: int) -> bytes:
        return b"J" + struct.pack("<i", value)

    def tup(items: tuple[int, ...]) -> bytes:
        return b"(" + b"".join(i(v) for v in items) + b"t"

    pid = b"(" + s("storage") + b"ctorch\nFloatStorage\n" + s("0") + s("cpu") + i(numel) + b"Nt" + b"Q"
    tensor = (
        b"ctorch._utils\n_rebuild_tensor_v2\n("
        + pid + i(offset) + tup(size) + tup(stride) + b"\x89" + b"ccollections\nOrderedDict\n)R"
        + b"tR"
    )
    obj = b"\x80\x02}(" + s("w") + tensor + b"u."
    storage = struct.pack("<q", numel) + np.arange(numel, dtype="<f4").tobytes()
    return _legacy_file(obj + pickle.dumps(["0"], protocol=2) + storage)


def test_handwritten_checkpoint_respects_offset_and_strides(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    path.write_bytes(_pickled_tensor(offset=2, size=(2, 3), stride=(1, 2), numel=8))
    w = load_torch_checkpoint(path)["w"]
    np.testing.assert_array_equal(w, np.array([[2, 4, 6], [3, 5, 7]], np.float32))


@pytest.mark.parametrize(
    "offset, size, stride",
    [(0, (3, 3), (3, 1)), (7, (2,), (1,)), (0, (2, 2), (-1, 1))],
)
def test_tensor_outside_its_storage_is_refused(tmp_path: Path, offset: int, size: tuple, stride: tuple) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(_pickled_tensor(offset=offset, size=size, stride=stride, numel=8))
    with pytest.raises(ValueError):
        load_torch_checkpoint(path)


def test_unknown_persistent_id_is_refused() -> None:
    def persistent_id(obj: object) -> object:
        return ("module", "os") if obj == "x" else None

    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.persistent_id = persistent_id
    pickler.dump(["x"])
    with pytest.raises(pickle.UnpicklingError):
        se._RestrictedUnpickler(io.BytesIO(buf.getvalue()), lambda pid: se._parse_storage_pid(pid)).load()


# --- helpers -------------------------------------------------------------------------

def test_singleton_is_shared_across_threads() -> None:
    seen: list[SpeakerEncoder] = []
    threads = [threading.Thread(target=lambda: seen.append(get_speaker_encoder())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 and all(e is seen[0] for e in seen)
    assert get_speaker_encoder() is seen[0]


def test_cosine_similarity() -> None:
    assert cosine_similarity(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(1.0)
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == pytest.approx(-1.0)
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0
    with pytest.raises(ValueError):
        cosine_similarity(np.ones(2), np.ones(3))


def test_ten_second_prompt_is_fast(encoder: SpeakerEncoder) -> None:
    """A loose bound, for shared CI machines: 0.1-0.3 s is typical with single-threaded BLAS."""
    audio, sr = clip("jf_alpha_1")
    prompt = np.tile(audio, 2)[: 10 * sr]
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        encoder.embed(prompt, sr)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 3.0
