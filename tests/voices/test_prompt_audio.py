"""read_prompt_audio on real encoded audio: every container, every source, every limit."""

from __future__ import annotations

import base64
import functools
import io
import re
import struct
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tests.voices.test_url_fetch import LocalServer
from core.errors import ApiError, Forbidden, NotFound, PayloadTooLarge
from synthesis.encoding import wav_header
from voices.prompt_audio import (
    NEITHER,
    PromptLimits,
    PromptSourcePolicy,
    classify_source,
    decode_audio_bytes,
    decode_base64_text,
    read_prompt_audio,
    sniff_container,
)

RATE = 24000
CLOSED = PromptSourcePolicy(path_roots=(), allow_private_urls=False)
LIMITS = PromptLimits()


def speech_like(seconds: float, rate: int = RATE, *, level: float = 0.5) -> np.ndarray:
    """Harmonics on a wandering pitch under a syllable-rate envelope."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 35 * np.sin(2 * np.pi * 0.8 * t) + 12 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 9))
    envelope = 0.15 + 0.85 * (0.5 - 0.5 * np.cos(2 * np.pi * 3.5 * t))
    signal = voice * envelope
    return (level * signal / np.abs(signal).max()).astype(np.float32)


# name -> (muxer, encoder, rate, channels, label the reader should report)
FORMATS = {
    "wav": ("wav", "pcm_s16le", RATE, 1, "wav"),
    "mp3": ("mp3", "libmp3lame", RATE, 1, "mp3"),
    "flac": ("flac", "flac", RATE, 1, "flac"),
    "ogg-opus": ("ogg", "libopus", 48000, 1, "ogg"),
    "ogg-vorbis": ("ogg", "vorbis", RATE, 2, "ogg"),  # FFmpeg's vorbis encoder is stereo-only
    "m4a-aac": ("ipod", "aac", RATE, 1, "mp4"),
    "webm-opus": ("webm", "libopus", 48000, 1, "webm"),
    "adts-aac": ("adts", "aac", RATE, 1, "aac"),
    "aiff": ("aiff", "pcm_s16be", RATE, 1, "aiff"),
}


def encode(signal: np.ndarray, fmt: str, codec: str, rate: int, channels: int = 1) -> bytes:
    """Encode ``signal`` (mono, or shape (channels, n)) with PyAV into memory."""
    planes = np.atleast_2d(signal).astype(np.float32)
    if planes.shape[0] != channels:
        planes = np.repeat(planes[:1], channels, axis=0)
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        options = {"strict": "experimental"} if codec == "vorbis" else {}
        stream = container.add_stream(codec, rate=rate, layout=layout, options=options)
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


@functools.cache
def sample(name: str, seconds: float = 2.0) -> bytes:
    fmt, codec, rate, channels, _ = FORMATS[name]
    return encode(speech_like(seconds, rate), fmt, codec, rate, channels)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pcm16(signal: np.ndarray) -> bytes:
    return (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()


def read(source: str, *, policy: PromptSourcePolicy = CLOSED, limits: PromptLimits = LIMITS, **kw: object):
    return read_prompt_audio(source, policy=policy, limits=limits, **kw)  # type: ignore[arg-type]


def rms_db(x: np.ndarray) -> float:
    return 20 * float(np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


# --- formats, recognised by content ------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_container_from_base64(name: str) -> None:
    rate, label = FORMATS[name][2], FORMATS[name][4]
    audio = read(b64(sample(name)))
    assert audio.container == label
    assert audio.sample_rate == rate
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert 1.95 < audio.duration < 2.1  # codec priming/padding allowed
    assert abs(rms_db(audio.samples) - rms_db(speech_like(2.0, rate))) < 1.5
    assert np.abs(audio.samples).max() <= 1.0
    assert audio.raw == sample(name)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_container_from_a_file_with_a_misleading_name(name: str, tmp_path: Path) -> None:
    wrong = {"wav": "voice.mp3"}.get(name, "voice.wav")
    (tmp_path / wrong).write_bytes(sample(name))
    policy = PromptSourcePolicy(path_roots=(tmp_path,), allow_private_urls=False)
    audio = read(str(tmp_path / wrong), policy=policy)
    assert audio.container == FORMATS[name][4]


def test_mp3_without_id3_tag_is_recognised_by_frame_sync() -> None:
    data = sample("mp3")
    assert data[:3] == b"ID3"
    size = 0
    for b in data[6:10]:
        size = size << 7 | b
    bare = data[10 + size :]
    assert sniff_container(bare) == "mp3"
    text = b64(bare)
    assert text.startswith("/")  # base64 of 0xFF 0xFx: looks like an absolute path
    assert read(text).container == "mp3"


def test_stereo_is_downmixed_by_averaging() -> None:
    left = speech_like(1.5)
    wav = encode(np.stack([left, np.zeros_like(left)]), "wav", "pcm_s16le", RATE, 2)
    samples, rate, label = decode_audio_bytes(wav)
    assert (rate, label) == (RATE, "wav")
    np.testing.assert_allclose(samples, left / 2, atol=1e-3)


# --- base64 spellings --------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "data:audio/wav;base64,",
        "data:application/octet-stream;base64,",
        "DATA:audio/x-anything;BASE64,",
        "data:;base64,",
    ],
)
def test_data_uri(prefix: str) -> None:
    assert read(prefix + b64(sample("flac"))).container == "flac"


def test_data_uri_must_be_base64() -> None:
    with pytest.raises(ApiError, match="must be base64"):
        read("data:audio/wav,RIFF....")
    with pytest.raises(ApiError, match="valid base64"):
        read("data:audio/wav;base64,@@@@")


def test_base64_with_line_breaks_urlsafe_alphabet_and_no_padding() -> None:
    data = sample("ogg-opus")[:-1]  # odd length, so the text really needs padding
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert "-" in text or "_" in text
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert decode_base64_text("  " + wrapped + "\r\n", max_bytes=1 << 24) == data
    mime = base64.encodebytes(sample("wav")).decode()  # standard alphabet, \n every 76
    assert read(mime).container == "wav"


def test_invalid_base64_gets_the_combined_message() -> None:
    for bad in ["hello world!", "abcde", "ab=cd", "%%%%"]:
        with pytest.raises(ApiError) as info:
            read(bad)
        assert info.value.message == NEITHER and info.value.status == 400


# --- raw PCM -----------------------------------------------------------------------


def test_raw_pcm_defaults_to_16k() -> None:
    signal = speech_like(2.0, 16000)
    audio = read(b64(pcm16(signal)))
    assert (audio.container, audio.sample_rate) == ("raw-pcm-s16le", 16000)
    assert audio.duration == pytest.approx(2.0)
    np.testing.assert_allclose(audio.samples, signal, atol=1e-4)


@pytest.mark.parametrize("override", [24000, "22050", 8000, 48000])
def test_raw_pcm_sample_rate_override(override: int | str) -> None:
    rate = int(override)
    audio = read(b64(pcm16(speech_like(1.5, rate))), raw_sample_rate=override)
    assert audio.sample_rate == rate and audio.duration == pytest.approx(1.5)


def test_sample_rate_override_does_not_touch_containers() -> None:
    assert read(b64(sample("wav")), raw_sample_rate=8000).sample_rate == RATE


@pytest.mark.parametrize("bad", [7999, 48001, 0, -16000, 16000.0, True, "abc", "16k", None])
def test_bad_sample_rate_override(bad: object) -> None:
    with pytest.raises(ApiError, match="sample_rate") as info:
        read(b64(pcm16(speech_like(1.5, 16000))), raw_sample_rate=bad)
    assert info.value.status == 400


def test_raw_pcm_with_an_odd_byte_count() -> None:
    with pytest.raises(ApiError, match="odd number of bytes"):
        read(b64(pcm16(speech_like(1.5, 16000)) + b"\x01"))


def test_unknown_bytes_from_a_file_are_not_taken_as_pcm(tmp_path: Path) -> None:
    (tmp_path / "voice.pcm").write_bytes(pcm16(speech_like(2.0, 16000)))
    policy = PromptSourcePolicy(path_roots=(tmp_path,), allow_private_urls=False)
    with pytest.raises(ApiError, match="not in a recognised format"):
        read(str(tmp_path / "voice.pcm"), policy=policy)


# --- corrupt, empty, too big -------------------------------------------------------


@pytest.mark.parametrize("source", ["", "   \n", "===="])
def test_empty(source: str) -> None:
    with pytest.raises(ApiError, match="empty"):
        read(source)


def test_truncated_mp3() -> None:
    data = sample("mp3")
    with pytest.raises(ApiError, match="truncated") as info:
        read(b64(data[: len(data) // 2]))
    assert info.value.status == 400
    with pytest.raises(ApiError, match="corrupt|no decodable"):
        read(b64(data[:300]))


@pytest.mark.parametrize(("name", "keep"), [("flac", 0.5), ("m4a-aac", 0.5), ("webm-opus", 0.5), ("ogg-opus", 0.02)])
def test_truncated_containers(name: str, keep: float) -> None:
    data = sample(name)
    with pytest.raises(ApiError, match="truncated|corrupt|no decodable"):
        read(b64(data[: int(len(data) * keep)]))


def wav_file(pcm: bytes, rate: int, data_size: int, *, riff: bytes = b"RIFF", extra: bytes = b"") -> bytes:
    """A mono 16-bit wav whose data chunk declares ``data_size`` bytes; ``extra`` chunks go first."""
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + extra + fmt + struct.pack("<4sI", b"data", data_size) + pcm
    return riff + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


@pytest.mark.parametrize("name", ["wav", "aiff"])
def test_a_pcm_container_cut_short_is_truncated(name: str) -> None:
    """FFmpeg decodes what is there; the header says how much should be."""
    data = sample(name)
    for keep in (0.5, 0.9):
        with pytest.raises(ApiError, match=rf"\({name}\) is truncated: it declares 2.00 s") as info:
            read(b64(data[: int(len(data) * keep)]))
        assert info.value.status == 400
    assert read(b64(data[:-1])).container == name  # a byte short of the end: nothing audible is missing


def test_wav_sizes_from_streaming_writers_and_rf64() -> None:
    rate = 16000
    pcm = pcm16(speech_like(2.0, rate))
    for unknown in (0, 0xFFFFFFFF, 0x7FFFF000):  # "length unknown" as streaming writers put it
        assert read(b64(wav_file(pcm, rate, unknown))).duration == pytest.approx(2.0)
    assert read(b64(wav_header(rate, None) + pcm)).duration == pytest.approx(2.0)  # our own stream
    assert read(b64(wav_file(pcm, rate, len(pcm)) + b"LIST\xff\x00\x00\x00cut")).duration == pytest.approx(2.0)

    def rf64(declared: int) -> bytes:
        ds64 = struct.pack("<4sIQQQI", b"ds64", 28, 0, declared, declared // 2, 0)
        return wav_file(pcm, rate, 0xFFFFFFFF, riff=b"RF64", extra=ds64)

    assert read(b64(rf64(len(pcm)))).duration == pytest.approx(2.0)
    with pytest.raises(ApiError, match="truncated: it declares 4.00 s but only 2.00 s"):
        read(b64(rf64(2 * len(pcm))))


def test_which_containers_tell_a_cut_at_half() -> None:
    """Half of a 6 s prompt: every container that records its length is refused.

    Ogg records no total length (FFmpeg reads the last page's position), so a cut between
    pages decodes as a shorter, valid file; it is then held to the duration and speech checks.
    ADTS aac and a raw mp3 without a Xing/Info/VBRI frame record none either (refused here
    only because the cut lands inside a frame).
    """
    refused = {}
    for name in FORMATS:
        data = sample(name, 6.0)
        try:
            read(b64(data[: len(data) // 2]))
            refused[name] = False
        except ApiError as exc:
            assert exc.status == 400 and re.search("truncated", exc.message), exc.message
            refused[name] = True
    assert refused == {name: name != "ogg-opus" for name in FORMATS}


@pytest.mark.parametrize("magic", [b"OggS", b"fLaC", b"ID3\x04\x00\x00\x00\x00\x00\x00", b"RIFF\x00\x00\x00\x00WAVE"])
def test_container_magic_followed_by_noise(magic: bytes) -> None:
    noise = np.random.default_rng(1).bytes(20_000)
    with pytest.raises(ApiError, match="corrupt|no decodable|no audio") as info:
        read(b64(magic + noise))
    assert info.value.status == 400


def test_base64_size_is_checked_before_decoding() -> None:
    limits = PromptLimits(max_bytes=1000)
    with pytest.raises(PayloadTooLarge) as info:
        read("A" * 5000 + "!!!", limits=limits)  # not even valid base64: never decoded
    assert info.value.status == 413
    with pytest.raises(PayloadTooLarge):
        read(b64(b"\x00" * 1002), limits=limits)


def test_policy_byte_cap_applies_too(tmp_path: Path) -> None:
    (tmp_path / "p.wav").write_bytes(sample("wav"))
    policy = PromptSourcePolicy(path_roots=(tmp_path,), allow_private_urls=False, max_bytes=1000)
    with pytest.raises(PayloadTooLarge):
        read(str(tmp_path / "p.wav"), policy=policy)


# --- duration and silence ----------------------------------------------------------


def test_too_short() -> None:
    with pytest.raises(ApiError, match="too short"):
        read(b64(encode(speech_like(0.5), "wav", "pcm_s16le", RATE)))
    with pytest.raises(ApiError, match="too short"):
        read(b64(pcm16(speech_like(0.9, 16000))))


def test_too_long() -> None:
    with pytest.raises(ApiError, match="too long"):
        read(b64(pcm16(speech_like(31, 16000))))
    with pytest.raises(ApiError, match="too long"):
        read(b64(sample("mp3", 5.0)), limits=PromptLimits(max_seconds=4.0))


def test_too_long_stops_decoding_early() -> None:
    # Ten minutes of FLAC silence is ~100 KB; the limit must be hit without decoding it all.
    bomb = encode(np.zeros(8000 * 600, np.float32), "flac", "flac", 8000)
    assert len(bomb) < 200_000
    started = time.perf_counter()
    with pytest.raises(ApiError, match="too long"):
        decode_audio_bytes(bomb, max_seconds=1.0)
    assert time.perf_counter() - started < 0.2  # a full decode takes several times that


@pytest.mark.parametrize(
    "signal",
    [
        np.zeros(RATE * 2, np.float32),
        np.full(RATE * 2, 0.3, np.float32),  # pure DC offset
        (np.random.default_rng(2).standard_normal(RATE * 2) * 10 ** (-62 / 20)).astype(np.float32),
    ],
    ids=["digital-zero", "dc", "noise-at--62-dBFS"],
)
def test_silence(signal: np.ndarray) -> None:
    with pytest.raises(ApiError, match="silent") as info:
        read(b64(encode(signal, "wav", "pcm_s16le", RATE)))
    assert info.value.status == 400


def test_quiet_speech_passes_and_threshold_is_configurable() -> None:
    quiet = b64(encode(speech_like(2.0, level=0.01), "wav", "pcm_s16le", RATE))  # about -45 dBFS rms
    assert read(quiet).duration == pytest.approx(2.0)
    with pytest.raises(ApiError, match="silent"):
        read(quiet, limits=PromptLimits(silence_dbfs=-30.0))


@pytest.mark.parametrize(
    "audio",
    [
        pytest.param(lambda: b64(np.random.default_rng(5).bytes(64000)), id="random-bytes-as-raw-pcm"),
        pytest.param(lambda: b64(encode(np.random.default_rng(6).standard_normal(RATE * 3).astype(np.float32) * 0.1,
                                        "wav", "pcm_s16le", RATE)), id="white-noise-wav"),
        pytest.param(lambda: b64(encode(0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE * 2) / RATE).astype(np.float32),
                                        "flac", "flac", RATE)), id="sine-flac"),
    ],
)
def test_what_is_not_speech_is_refused(audio) -> None:
    with pytest.raises(ApiError, match="does not sound like speech") as info:
        read(audio())
    assert info.value.status == 400


def test_the_speech_check_can_be_turned_off() -> None:
    noise = b64(np.random.default_rng(5).bytes(64000))
    assert read(noise, limits=PromptLimits(min_voiced_seconds=0)).duration == pytest.approx(2.0)


# --- telling the sources apart -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("http://example.invalid/a.wav", "url"),
        ("HTTPS://example.invalid/a.wav", "url"),
        ("data:audio/wav;base64,UklGRg==", "data-uri"),
        ("/srv/voices/a.wav", "path"),
        ("./a.wav", "path"),
        ("../a.wav", "path"),
        ("~/a.wav", "path"),
        ("C:\\voices\\a.wav", "path"),
        ("/srv/voices/speaker", "path"),  # base64 letters only, but short and path-shaped
        ("UklGRiQAAABXQVZF", "base64"),
        ("//uQxAAAAAAAAAAAAAAA" * 20, "base64"),  # mp3 base64 starts with //
    ],
)
def test_classify(text: str, kind: str) -> None:
    assert classify_source(text, None)[0] == kind


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/a.wav", "gopher://127.0.0.1/", "javascript:alert(1)"]
)
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ApiError, match="scheme") as info:
        read(url)
    assert info.value.status == 400


def test_existing_file_with_a_base64_looking_name(tmp_path: Path) -> None:
    (tmp_path / "speaker1").write_bytes(sample("wav"))
    policy = PromptSourcePolicy(path_roots=(tmp_path,), allow_private_urls=False)
    assert read("speaker1", policy=policy).container == "wav"  # relative to the root
    assert read(str(tmp_path / "speaker1"), policy=policy).container == "wav"


def test_path_errors(tmp_path: Path) -> None:
    policy = PromptSourcePolicy(path_roots=(tmp_path,), allow_private_urls=False)
    with pytest.raises(NotFound):
        read(str(tmp_path / "missing.wav"), policy=policy)
    with pytest.raises(Forbidden):
        read("/etc/hostname.wav", policy=policy)
    with pytest.raises(Forbidden):
        read(str(tmp_path / ".." / "x.wav"), policy=policy)
    with pytest.raises(Forbidden, match="not allowed"):
        read(str(tmp_path / "x.wav"), policy=CLOSED)
    with pytest.raises(ApiError, match="NUL"):
        read(str(tmp_path / "x\x00.wav"), policy=policy)


def test_non_path_text_that_is_not_a_file_is_the_combined_error(tmp_path: Path) -> None:
    policy = PromptSourcePolicy(path_roots=(tmp_path,), allow_private_urls=False)
    with pytest.raises(ApiError) as info:
        read("voice.wav", policy=policy)
    assert info.value.message == NEITHER


def test_open_mode_reads_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "p.flac").write_bytes(sample("flac"))
    policy = PromptSourcePolicy(path_roots=None, allow_private_urls=False)
    assert read(str(tmp_path / "p.flac"), policy=policy).container == "flac"


# --- URLs --------------------------------------------------------------------------


def test_url_source() -> None:
    with LocalServer() as server:
        server.files["/prompt.bin"] = sample("mp3")
        server.files["/raw.pcm"] = pcm16(speech_like(2.0, 16000))
        open_policy = PromptSourcePolicy(path_roots=(), allow_private_urls=True, url_timeout_s=5.0)
        assert read(server.url("/prompt.bin"), policy=open_policy).container == "mp3"
        with pytest.raises(ApiError, match="not in a recognised format"):
            read(server.url("/raw.pcm"), policy=open_policy)
        with pytest.raises(Forbidden):
            read(server.url("/prompt.bin"), policy=CLOSED)
        assert server.seen == ["/prompt.bin", "/raw.pcm"]
