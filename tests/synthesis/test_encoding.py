from __future__ import annotations

import io
import struct
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest

from synthesis.encoding import FORMATS, SAMPLE_RATES, AudioEncoder, make_encoder
from synthesis.resample import resample

RATES = (8000, 22050, 44100, 48000)
LOSSLESS = ("pcm", "wav", "flac")
#: decoded samples the codec adds in front of a stream (measured; see synthesis/encoding.py)
STREAM_LEAD = {"mp3": 576 + 529, "aac": 1024, "m4a": 1024}
AAC_FRAME = 1024


# --- helpers ------------------------------------------------------------------------------


def speech_like(rate: int, seconds: float) -> np.ndarray:
    """Voiced-speech stand-in: harmonics of a gliding pitch, steady loudness, no silence."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    f0 = 150 + 25 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    top = min(3400, 0.4 * rate)
    x = sum(np.sin(k * phase + k) / k for k in range(1, int(top / 200)))
    return (0.35 * x / np.abs(x).max()).astype(np.float32)


def split(audio: np.ndarray, rate: int) -> list[np.ndarray]:
    """Uneven clause-sized chunks (none a multiple of a codec frame)."""
    return np.split(audio, [int(rate * 0.37), int(rate * 0.78)])


def decode(data: bytes, fmt: str, rate: int) -> tuple[int, np.ndarray]:
    """Decode with PyAV/FFmpeg from memory; returns (sample rate, mono float64)."""
    if fmt == "pcm":
        container = av.open(io.BytesIO(data), format="s16le", options={"sample_rate": str(rate), "ch_layout": "mono"})
    else:  # ADTS is too short to probe reliably: name its demuxer, as a client would from the mime type
        container = av.open(io.BytesIO(data), format="aac" if fmt == "aac" else None)
    with container:
        stream = container.streams.audio[0]
        assert stream.channels == 1
        parts, decoded_rate = [], stream.sample_rate
        for frame in container.decode(stream):
            samples = frame.to_ndarray()
            if samples.dtype == np.int16:
                samples = samples / 32768.0
            elif samples.dtype == np.int32:
                samples = samples / 2.0**31
            parts.append(samples.reshape(-1).astype(np.float64))
            decoded_rate = frame.sample_rate
    return decoded_rate, np.concatenate(parts) if parts else np.zeros(0)


def decoded_rate_for(fmt: str, rate: int) -> int:
    return 48000 if fmt == "opus" else rate  # Ogg Opus always decodes at 48 kHz


def reference(audio: np.ndarray, rate: int, decoded_rate: int) -> np.ndarray:
    return audio.astype(np.float64) if decoded_rate == rate else resample(audio, rate, decoded_rate).astype(np.float64)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def best_lag(ref: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    """Shift of ``y`` against ``ref`` (positive: ``y`` is late) by cross-correlation."""
    n = len(ref) + len(y)
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(ref, n)), n)
    lags = np.r_[0:max_lag + 1, -max_lag:0]
    return int(lags[np.argmax(corr[lags])])


def assert_no_dropout(y: np.ndarray, ref: np.ndarray, rate: int, lag: int) -> None:
    """Every 10 ms window keeps at least half the reference's level: no gap or fade at seams."""
    aligned = y[lag:lag + len(ref)]
    assert len(aligned) == len(ref)
    w = rate // 100
    k = len(ref) // w
    got = np.sqrt(np.mean(aligned[: k * w].reshape(k, w) ** 2, axis=1))
    want = np.sqrt(np.mean(ref[: k * w].reshape(k, w) ** 2, axis=1))
    worst = int(np.argmin(got / want))
    assert got[worst] / want[worst] > 0.5, f"dropout at {worst * w / rate:.3f}s"


def assert_close_to(y: np.ndarray, ref: np.ndarray, fmt: str, lag: int) -> None:
    aligned = y[lag:lag + len(ref)]
    if fmt in LOSSLESS:
        np.testing.assert_allclose(aligned, ref, atol=1.5 / 32768)
    else:
        snr = 10 * np.log10(np.sum(ref**2) / np.sum((aligned - ref) ** 2))
        assert snr > 10, f"SNR {snr:.1f} dB"


def encode_all(fmt: str, rate: int, mode: str, chunks: list[np.ndarray]) -> list[bytes]:
    encoder = make_encoder(fmt, rate, mode)
    return [encoder.write(chunk) for chunk in chunks] + [encoder.finish()]


def mp4_boxes(data: bytes) -> list[str]:
    names, pos = [], 0
    while pos + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[pos:pos + 8])
        assert size >= 8
        names.append(name.decode("latin-1"))
        pos += size
    assert pos == len(data)
    return names


# --- file mode ----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_file_mode_every_chunk_is_a_whole_file(fmt: str, rate: int) -> None:
    audio = speech_like(rate, 1.3)
    outputs = encode_all(fmt, rate, "file", split(audio, rate))
    files = [out for out in outputs if out]
    assert len(files) >= 3
    sr = decoded_rate_for(fmt, rate)
    decoded = []
    for data in files:
        got_rate, samples = decode(data, fmt, rate)
        assert got_rate == sr
        assert np.abs(samples).max() > 0.05  # not silence (a held tail can be short)
        decoded.append(samples)
    energy = sum(np.sum(d**2) for d in decoded) / sr
    assert energy > 0.7 * np.sum(audio.astype(np.float64) ** 2) / rate

    lengths = [len(d) for d in decoded]
    ref = reference(audio, rate, sr)
    extra = sum(lengths) - len(ref)
    if fmt in (*LOSSLESS, "mp3"):
        assert extra == 0  # lossless, or delay/padding trimmed via the LAME tag
    elif fmt == "opus":
        assert abs(extra) <= 2  # pre-skip + end granule trimmed; resampler rounding
    elif fmt == "m4a":
        # edit list trims the priming; chunks are whole AAC frames, only the last file pads
        assert all(n % AAC_FRAME == 0 for n in lengths)
        assert 0 <= extra < AAC_FRAME
    else:  # aac: ADTS cannot signal trimming, every file starts with 1024 priming samples
        assert all(n % AAC_FRAME == 0 for n in lengths)
        assert len(files) * AAC_FRAME <= extra < (len(files) + 1) * AAC_FRAME

    if fmt != "aac":  # the chunks play back to back without a gap or a shift
        y = np.concatenate(decoded)
        lag = best_lag(ref, y, max_lag=sr // 100)
        assert abs(lag) <= sr // 1000
        ref = ref[: len(y) - max(lag, 0)]
        assert_no_dropout(y, ref, sr, max(lag, 0))
        assert_close_to(y, ref, fmt, max(lag, 0))


def test_file_mode_wav_header_has_exact_sizes() -> None:
    audio = speech_like(22050, 0.5)
    data = make_encoder("wav", 22050).write(audio)
    fields = struct.unpack("<4sI4s4sIHHIIHH4sI", data[:44])
    assert fields == (
        b"RIFF", 36 + 2 * len(audio), b"WAVE", b"fmt ", 16, 1, 1, 22050, 44100, 2, 16, b"data", 2 * len(audio),
    )
    assert len(data) == 44 + 2 * len(audio)


@pytest.mark.parametrize("n", [1153, 1198, 9261])
def test_file_mode_mp3_trims_exactly_where_ffmpeg_records_the_wrong_padding(n: int) -> None:
    # for these lengths libmp3lame spreads the padding over two packets (see fix_lame_padding)
    audio = speech_like(48000, n / 48000)
    data = make_encoder("mp3", 48000).write(audio)
    assert b"Info" in data[:64]
    assert len(decode(data, "mp3", 48000)[1]) == n


def test_file_mode_m4a_has_a_sample_exact_edit_list() -> None:
    audio = speech_like(24000, 0.5)  # 12000 samples: the file carries the 11 whole frames
    data = make_encoder("m4a", 24000).write(audio)
    assert data[4:12] == b"ftypM4A "
    assert {"ftyp", "mdat", "moov"} <= set(mp4_boxes(data))
    mvhd = data.index(b"mvhd") + 4
    assert data[mvhd] == 0 and struct.unpack(">I", data[mvhd + 12:mvhd + 16])[0] == 24000
    elst = data.index(b"elst") + 4
    version, count, duration, media_time = struct.unpack(">BxxxIII", data[elst:elst + 16])
    assert (version, count) == (0, 1)
    assert duration == 11 * AAC_FRAME  # movie timescale = sample rate, so no rounding
    assert media_time == AAC_FRAME  # the encoder priming, skipped by players


def test_file_mode_returns_nothing_for_no_audio() -> None:
    for fmt in FORMATS:
        encoder = make_encoder(fmt, 24000)
        assert encoder.write(np.zeros(0, dtype=np.float32)) == b""
        assert encoder.finish() == b""


@pytest.mark.parametrize("mode", ("file", "stream"))
@pytest.mark.parametrize("rate", (24000, 44100))
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_finish_with_the_last_piece_leaves_no_tail_of_its_own(fmt: str, rate: int, mode: str) -> None:
    """A job holds its last piece back for ``finish(last)``: the encoder's tail (AAC partial
    frame, resampler flush, codec look-ahead, closing page or fragment) goes out with it,
    so every format gives one output per piece, and the audio is what write() + finish() gives."""
    audio = speech_like(rate, 1.3)
    pieces = split(audio, rate)
    plain = encode_all(fmt, rate, mode, pieces)
    encoder = make_encoder(fmt, rate, mode)
    outputs = [encoder.write(piece) for piece in pieces[:-1]] + [encoder.finish(pieces[-1])]
    assert all(outputs) and len(outputs) == len(pieces)
    sr = decoded_rate_for(fmt, rate)
    last_piece = len(pieces[-1]) * sr / rate
    if mode == "stream":
        y = decode(b"".join(outputs), fmt, rate)[1]
        np.testing.assert_array_equal(y, decode(b"".join(plain), fmt, rate)[1])  # one output fewer, same stream
        assert len(y) - len(decode(b"".join(outputs[:-1]), fmt, rate)[1]) >= 0.95 * last_piece
        return
    lengths = [len(decode(out, fmt, rate)[1]) for out in outputs]
    assert lengths[-1] >= 0.99 * last_piece  # the last piece and its tail, not a sliver
    extra = sum(lengths) - len(reference(audio, rate, sr))
    if fmt in (*LOSSLESS, "mp3"):
        assert extra == 0
    elif fmt == "opus":
        assert abs(extra) <= 2
    elif fmt == "m4a":
        assert 0 <= extra < AAC_FRAME
    else:  # aac: 1024 priming samples per ADTS file, one file fewer than before
        assert len(outputs) * AAC_FRAME <= extra < (len(outputs) + 1) * AAC_FRAME


def test_finish_with_audio_after_no_writes_is_one_whole_output() -> None:
    for fmt in FORMATS:
        for mode in ("file", "stream"):
            audio = speech_like(44100, 0.3)
            data = make_encoder(fmt, 44100, mode).finish(audio)
            got_rate, y = decode(data, fmt, 44100)
            assert len(y) / got_rate == pytest.approx(0.3, abs=0.05), (fmt, mode)


# --- stream mode --------------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_stream_mode_concatenation_is_one_gapless_stream(fmt: str, rate: int) -> None:
    audio = speech_like(rate, 1.3)
    outputs = encode_all(fmt, rate, "stream", split(audio, rate))
    data = b"".join(outputs)
    sr = decoded_rate_for(fmt, rate)
    got_rate, y = decode(data, fmt, rate)
    assert got_rate == sr
    assert rms(y) > 0.5 * rms(audio)

    ref = reference(audio, rate, sr)
    lead = STREAM_LEAD.get(fmt, 0)
    extra = len(y) - len(ref)
    if fmt == "mp3":
        frame = 1152 if rate >= 32000 else 576
        assert lead <= extra < lead + 2 * frame
    elif fmt in ("aac", "m4a"):
        assert lead <= extra < lead + AAC_FRAME
    else:
        assert abs(extra) <= 2
    lag = best_lag(ref, y, max_lag=lead + sr // 100)
    assert abs(lag - lead) <= sr // 1000
    ref = ref[: len(y) - lag]
    assert_no_dropout(y, ref, sr, lag)
    assert_close_to(y, ref, fmt, lag)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_stream_mode_has_one_header_and_chunks_start_on_packets(fmt: str) -> None:
    rate = 24000
    audio = speech_like(rate, 1.3)
    outputs = encode_all(fmt, rate, "stream", split(audio, rate))
    data = b"".join(outputs)
    chunks = [out for out in outputs if out]
    assert len(chunks) >= 3
    if fmt == "opus":
        assert data.count(b"OpusHead") == 1
        assert all(c.startswith(b"OggS") for c in chunks)
    elif fmt == "wav":
        assert data.count(b"RIFF") == 1 and chunks[0].startswith(b"RIFF")
        assert struct.unpack("<I", chunks[0][4:8])[0] == 0xFFFFFFFF
        assert struct.unpack("<I", chunks[0][40:44])[0] == 0xFFFFFFFF
    elif fmt == "flac":
        assert data.count(b"fLaC") == 1 and chunks[0].startswith(b"fLaC")
        assert all(c[:2] == b"\xff\xf8" for c in chunks[1:])  # frame sync
    elif fmt in ("mp3", "aac"):
        assert not data.startswith(b"ID3")
        assert all(c[0] == 0xFF and c[1] & 0xE0 == 0xE0 for c in chunks)  # frame sync
    elif fmt == "m4a":
        boxes = mp4_boxes(data)
        assert boxes[:2] == ["ftyp", "moov"] and boxes.count("moov") == 1
        assert boxes.count("moof") > 10
        for c in chunks:
            mp4_boxes(c)  # every chunk is a whole number of boxes
    else:  # pcm
        assert len(data) == 2 * len(audio)


def held_back_limit(fmt: str, rate: int) -> int:
    """Most samples a stream encoder may still hold after write() returns (codec frames)."""
    mp3_frame = 1152 if rate >= 32000 else 576
    return {
        "pcm": 0,
        "wav": 0,
        "flac": max(rate // 50, 320),  # one block
        "opus": int(0.047 * rate),  # 20 ms partial frame + one 20 ms page + 6.5 ms look-ahead
        "mp3": 5 * mp3_frame,
        "aac": 3 * AAC_FRAME,  # partial frame + encoder delay + one packet
        "m4a": 4 * AAC_FRAME,  # ... + the fragment waiting for the next packet
    }[fmt]


@pytest.mark.parametrize("rate", (8000, 48000))
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_stream_mode_write_returns_the_audio_fed_so_far(fmt: str, rate: int) -> None:
    audio = speech_like(rate, 1.6)
    encoder = make_encoder(fmt, rate, "stream")
    sent, fed = b"", 0
    sr = decoded_rate_for(fmt, rate)
    for chunk in split(audio, rate):
        sent += encoder.write(chunk)
        fed += len(chunk)
        decoded = len(decode(sent, fmt, rate)[1]) * rate / sr - STREAM_LEAD.get(fmt, 0)
        assert fed - decoded <= held_back_limit(fmt, rate)


def test_stream_mode_wav_and_empty_streams() -> None:
    encoder = make_encoder("wav", 16000, "stream")
    header = encoder.finish()  # no audio at all: still a valid (empty) stream
    assert header[:4] == b"RIFF" and len(header) == 44
    for fmt in FORMATS:
        make_encoder(fmt, 16000, "stream").finish()


@pytest.mark.parametrize("rate", (16000, 24000, 32000))
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_other_api_rates(fmt: str, rate: int) -> None:
    audio = speech_like(rate, 0.5)
    for mode in ("file", "stream"):
        outputs = [out for out in encode_all(fmt, rate, mode, [audio]) if out]
        got_rate, y = decode(b"".join(outputs) if mode == "stream" else outputs[0], fmt, rate)
        assert got_rate == decoded_rate_for(fmt, rate)
        assert rms(y) > 0.5 * rms(audio)
        assert len(y) / got_rate == pytest.approx(len(audio) / rate, abs=0.1)


# --- formats, rates, pcm, opus policy ---------------------------------------------------


def test_format_table() -> None:
    assert set(FORMATS) == {"opus", "pcm", "wav", "mp3", "flac", "aac", "m4a"}
    for name, spec in FORMATS.items():
        assert spec.name == name and spec.mime.startswith("audio/")
        assert set(SAMPLE_RATES) <= set(spec.sample_rates)
    assert FORMATS["m4a"].container == "ipod" and FORMATS["aac"].container == "adts"


def test_opus_rate_policy() -> None:
    spec = FORMATS["opus"]
    policy = {r: spec.codec_rate(r) for r in SAMPLE_RATES}
    assert policy == {8000: 8000, 16000: 16000, 22050: 24000, 24000: 24000, 32000: 48000, 44100: 48000, 48000: 48000}
    for rate in SAMPLE_RATES:
        assert FORMATS["mp3"].codec_rate(rate) == rate
    for rate, codec_rate in policy.items():
        encoder = make_encoder("opus", rate, "stream")
        assert encoder.codec_rate == codec_rate and encoder.sample_rate == rate
        data = encoder.write(speech_like(rate, 0.2)) + encoder.finish()
        head = data.index(b"OpusHead")
        version, channels, pre_skip, input_rate = struct.unpack("<BBHI", data[head + 8:head + 16])
        assert (version, channels, input_rate) == (1, 1, codec_rate)
        assert 0 < pre_skip < 1000


def test_pcm_is_exact_little_endian_int16() -> None:
    audio = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.7, -3.0, 1e-6], dtype=np.float32)
    for mode in ("file", "stream"):
        encoder = make_encoder("pcm", 8000, mode)
        data = encoder.write(audio)
        assert len(data) == 2 * len(audio)
        assert np.frombuffer(data, "<i2").tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32767, 0]
        assert encoder.finish() == b""
    audio = speech_like(44100, 0.3)
    assert len(make_encoder("pcm", 44100).write(audio)) == 2 * len(audio)


@pytest.mark.parametrize(
    ("fmt", "rate", "mode"),
    [("ogg", 24000, "file"), ("MP3", 24000, "file"), ("", 24000, "file"), ("mp3", 11025, "file"),
     ("opus", 12345, "file"), ("wav", 0, "file"), ("wav", 24000.0, "file"), ("pcm", 96000, "file"),
     ("mp3", 24000, "chunked"), ("mp3", 24000, "")],
)
def test_bad_format_rate_or_mode_raise(fmt: str, rate: int, mode: str) -> None:
    with pytest.raises(ValueError):
        make_encoder(fmt, rate, mode)


def test_bad_audio_and_use_after_finish() -> None:
    encoder = make_encoder("flac", 16000, "stream")
    assert isinstance(encoder, AudioEncoder)
    with pytest.raises(ValueError):
        encoder.write(np.zeros(100, dtype=np.int16))
    with pytest.raises(ValueError):
        encoder.write(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(ValueError):
        encoder.write(np.array([0.0, np.nan], dtype=np.float32))
    encoder.write(np.zeros((100, 1), dtype=np.float64))  # a column of float64 is fine
    encoder.finish()
    with pytest.raises(RuntimeError):
        encoder.write(np.zeros(100, dtype=np.float32))
    with pytest.raises(RuntimeError):
        encoder.finish()


def test_encoders_run_concurrently_in_worker_threads() -> None:
    jobs = [(fmt, rate, mode) for fmt in ("opus", "mp3", "m4a", "flac") for rate in (16000, 44100)
            for mode in ("file", "stream")]

    def run(job: tuple[str, int, str]) -> np.ndarray:
        fmt, rate, mode = job
        audio = speech_like(rate, 0.6)
        outputs = [out for out in encode_all(fmt, rate, mode, split(audio, rate)) if out]
        if mode == "stream":
            return decode(b"".join(outputs), fmt, rate)[1]
        return np.concatenate([decode(out, fmt, rate)[1] for out in outputs])

    serial = [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(run, jobs))
    for job, one, other in zip(jobs, serial, parallel):
        np.testing.assert_array_equal(one, other, err_msg=str(job))
