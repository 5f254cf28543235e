"""Streaming audio encoders for every output format of the API.

One encoder per request: feed mono float32 audio in [-1, 1] at the requested rate with
``write()``; each call returns bytes ready to send, possibly ``b""`` (nothing to send yet).
``finish()`` returns what is left, possibly ``b""``. ``finish(last)`` encodes the request's
last piece of audio together with that tail and returns both as one value (one whole file
in file mode), so a caller that holds back its last piece sends no extra sliver of a chunk
for the tail (AAC's partial frame, the resampler's flush, the codec's look-ahead).

Modes
  ``"file"``   every non-empty return value is a complete, independently decodable file.
               Lossy codecs carry their delay/padding as metadata so decoders trim it
               (Ogg Opus pre-skip + end granule, MP3 LAME/Info tag, M4A edit list with
               a sample-exact movie timescale). AAC chunks are cut on 1024-sample frame
               boundaries (the remainder is held for the next call or ``finish()``), so an
               M4A chunk decodes to exactly its samples even where a decoder ignores
               end trimming. ADTS cannot signal trimming: each ADTS file starts with the
               AAC encoder's 1024 priming samples.
  ``"stream"`` one container for the whole request; the concatenation of all returned
               bytes is one valid stream with one header, and every non-empty return
               starts on a packet/page/box boundary. Muxers write to a write-only sink and
               flush after every packet; what stays behind is the codec's partial frame and
               look-ahead, plus one Ogg page (opus) or one fMP4 fragment (m4a) that the
               muxer closes when the next packet arrives. The stream starts with the
               codec's delay where the container cannot signal it on a pipe (MP3: 1105
               samples, AAC/M4A: 1024).

Opus rate policy: Opus encodes at 8, 12, 16, 24 or 48 kHz. A request at another rate is
resampled inside the encoder to the smallest Opus rate at or above it (22050 -> 24000,
32000 and 44100 -> 48000), which keeps the full requested bandwidth without spending
bits above it. Ogg Opus decoders output 48 kHz whatever rate was encoded (RFC 7845), and
the OpusHead "input sample rate" field records the encode rate. ``FORMATS["opus"].
codec_rate(rate)`` gives that rate, so a caller can resample straight to it and pass it to
``make_encoder`` to avoid resampling twice. Every other format is encoded at exactly the
requested rate.

Instances are not shared between requests; a lock makes each one safe to call from any
worker thread.
"""
from __future__ import annotations

import io
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol, runtime_checkable

import av
import numpy as np

from synthesis.resample import StreamResampler

#: Rates the public API accepts, for every format.
SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
#: Rates libopus runs at.
OPUS_RATES: tuple[int, ...] = (8000, 12000, 16000, 24000, 48000)
MODES: tuple[str, ...] = ("file", "stream")

_AAC_FRAME = 1024


def _speech_bitrate(rate: int) -> int:
    """Mono speech bitrate for MP3/AAC, scaled with bandwidth."""
    if rate <= 8000:
        return 24_000
    if rate <= 16000:
        return 32_000
    if rate <= 24000:
        return 48_000
    return 64_000


def _opus_bitrate(rate: int) -> int:
    return {8000: 16_000, 12000: 20_000, 16000: 24_000, 24000: 32_000}.get(rate, 48_000)


@dataclass(frozen=True)
class FormatSpec:
    name: str
    #: FFmpeg muxer name; "raw" and "wav" are written by hand (no FFmpeg involved)
    container: str
    #: FFmpeg encoder name
    codec: str
    mime: str
    extension: str
    lossy: bool
    #: rates make_encoder accepts
    sample_rates: tuple[int, ...] = SAMPLE_RATES
    #: rates the codec itself runs at; empty = exactly the requested rate
    codec_rates: tuple[int, ...] = ()
    #: sample format handed to the FFmpeg encoder
    frame_format: str = "s16"
    #: bitrate for a codec rate; None = lossless
    bitrate: Callable[[int], int] | None = field(default=None, repr=False, compare=False)

    def codec_rate(self, sample_rate: int) -> int:
        """The rate this format encodes a ``sample_rate`` request at."""
        if sample_rate not in self.sample_rates:
            raise ValueError(
                f"sample rate {sample_rate!r} not supported for {self.name}; "
                f"expected one of {self.sample_rates}"
            )
        if not self.codec_rates:
            return sample_rate
        return min(r for r in self.codec_rates if r >= sample_rate)


FORMATS: dict[str, FormatSpec] = {
    "opus": FormatSpec(
        "opus", "ogg", "libopus", "audio/ogg; codecs=opus", "opus", True,
        sample_rates=tuple(sorted(set(SAMPLE_RATES) | set(OPUS_RATES))),
        codec_rates=OPUS_RATES, frame_format="flt", bitrate=_opus_bitrate,
    ),
    "pcm": FormatSpec("pcm", "raw", "pcm_s16le", "audio/pcm", "pcm", False),
    "wav": FormatSpec("wav", "wav", "pcm_s16le", "audio/wav", "wav", False),
    "mp3": FormatSpec(
        "mp3", "mp3", "libmp3lame", "audio/mpeg", "mp3", True,
        frame_format="fltp", bitrate=_speech_bitrate,
    ),
    "flac": FormatSpec("flac", "flac", "flac", "audio/flac", "flac", False),
    "aac": FormatSpec(
        "aac", "adts", "aac", "audio/aac", "aac", True,
        frame_format="fltp", bitrate=_speech_bitrate,
    ),
    "m4a": FormatSpec(
        "m4a", "ipod", "aac", "audio/mp4", "m4a", True,
        frame_format="fltp", bitrate=_speech_bitrate,
    ),
}


@runtime_checkable
class AudioEncoder(Protocol):
    spec: FormatSpec
    mode: str
    #: rate of the audio write() expects
    sample_rate: int
    #: rate the codec runs at (differs from sample_rate only for opus)
    codec_rate: int

    def write(self, audio: np.ndarray) -> bytes: ...

    def finish(self, audio: np.ndarray | None = None) -> bytes: ...


def make_encoder(fmt: str, sample_rate: int, mode: str = "file") -> AudioEncoder:
    spec = FORMATS.get(fmt) if isinstance(fmt, str) else None
    if spec is None:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {tuple(FORMATS)}")
    if mode not in MODES:
        raise ValueError(f"unknown chunk mode {mode!r}; expected one of {MODES}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise ValueError(f"sample rate must be an integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    spec.codec_rate(sample_rate)  # validates the rate
    if spec.container == "raw":
        return _PcmEncoder(spec, sample_rate, mode)
    if spec.container == "wav":
        return _WavEncoder(spec, sample_rate, mode)
    if mode == "file":
        return _AvFileEncoder(spec, sample_rate)
    return _AvStreamEncoder(spec, sample_rate)


# --- shared helpers ---------------------------------------------------------------------


def _as_mono_float(audio: np.ndarray) -> np.ndarray:
    arr = np.asarray(audio)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected float audio in [-1, 1], got dtype {arr.dtype}")
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("audio contains NaN or infinite samples")
    return np.clip(arr, -1.0, 1.0)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, rounded (symmetric scale, so -1.0 -> -32767)."""
    return np.rint(audio * 32767.0).astype("<i2")


class _Sink:
    """Write-only byte sink: no seek/tell, so FFmpeg muxers treat it as a pipe."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data


class _EncoderBase:
    def __init__(self, spec: FormatSpec, sample_rate: int, mode: str) -> None:
        self.spec = spec
        self.mode = mode
        self.sample_rate = sample_rate
        self.codec_rate = spec.codec_rate(sample_rate)
        self._lock = threading.Lock()
        self._finished = False

    def write(self, audio: np.ndarray) -> bytes:
        samples = _as_mono_float(audio)
        with self._lock:
            if self._finished:
                raise RuntimeError("encoder already finished")
            return self._write(samples)

    def finish(self, audio: np.ndarray | None = None) -> bytes:
        """The rest of the request, ``audio`` (its last piece) included, as one return value."""
        samples = _as_mono_float(audio) if audio is not None else np.zeros(0, dtype=np.float32)
        with self._lock:
            if self._finished:
                raise RuntimeError("encoder already finished")
            self._finished = True
            return self._finish(samples)

    def _write(self, samples: np.ndarray) -> bytes:
        raise NotImplementedError

    def _finish(self, samples: np.ndarray) -> bytes:
        """Stream-shaped outputs join by concatenation: the last piece, then the tail."""
        return (self._write(samples) if len(samples) else b"") + self._flush()

    def _flush(self) -> bytes:
        raise NotImplementedError


# --- pcm / wav (hand-written: trivial and exact) ----------------------------------------


class _PcmEncoder(_EncoderBase):
    def _write(self, samples: np.ndarray) -> bytes:
        return to_int16(samples).tobytes()

    def _flush(self) -> bytes:
        return b""


_STREAMING_SIZE = 0xFFFFFFFF


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """44-byte mono 16-bit PCM RIFF/WAVE header; ``data_bytes=None`` = unknown (streaming)."""
    if data_bytes is None:
        riff_size = data_size = _STREAMING_SIZE
    else:
        data_size = data_bytes
        riff_size = 36 + data_bytes
        if riff_size > _STREAMING_SIZE:
            raise ValueError("audio too long for a RIFF/WAVE file")
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff_size, b"WAVE",
        b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16,
        b"data", data_size,
    )


class _WavEncoder(_EncoderBase):
    def __init__(self, spec: FormatSpec, sample_rate: int, mode: str) -> None:
        super().__init__(spec, sample_rate, mode)
        self._header_sent = False

    def _stream_header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return wav_header(self.sample_rate, None)

    def _write(self, samples: np.ndarray) -> bytes:
        data = to_int16(samples).tobytes()
        if self.mode == "stream":
            return self._stream_header() + data
        if not data:
            return b""
        return wav_header(self.sample_rate, len(data)) + data

    def _flush(self) -> bytes:
        return self._stream_header() if self.mode == "stream" else b""


# --- FFmpeg-backed formats (PyAV) ---------------------------------------------------------


def _container_options(spec: FormatSpec, rate: int, mode: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    if mode == "stream":
        opts["flush_packets"] = "1"
    if spec.container == "ogg" and mode == "stream":
        opts["page_duration"] = "20000"  # microseconds: one 20 ms Opus packet per page
    elif spec.container == "mp3":
        opts["id3v2_version"] = "0"
        # the LAME/Info tag (gapless delay/padding) needs seeking back: file mode only
        opts["write_xing"] = "1" if mode == "file" else "0"
    elif spec.container == "flac":
        opts["metadata_header_padding"] = "0"
    elif spec.container == "ipod":
        if mode == "file":
            # sample-exact edit list (the default 1 ms timescale rounds the duration up).
            # moov stays at the end: "+faststart" re-reads the file, which custom IO can't.
            opts["movie_timescale"] = str(rate)
        else:
            opts["movflags"] = "frag_every_frame+empty_moov+default_base_moof"
    return opts


def _codec_options(spec: FormatSpec, rate: int, mode: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    if spec.codec == "libopus":
        opts["application"] = "audio"
    elif spec.codec == "libmp3lame":
        opts["compression_level"] = "5"  # LAME -q 5: faster than its default -q 3, same SNR on speech
        if mode == "stream":
            opts["reservoir"] = "0"  # no bit reservoir: each frame leaves LAME ~2 frames sooner
    elif spec.codec == "flac" and mode == "stream":
        # 20 ms blocks (40 ms at 8 kHz) instead of ~100 ms: less audio held back for
        # about 2% more bytes on speech
        opts["frame_size"] = str(max(rate // 50, 320))
    return opts


class _AvEncoderBase(_EncoderBase):
    def __init__(self, spec: FormatSpec, sample_rate: int, mode: str) -> None:
        super().__init__(spec, sample_rate, mode)
        self._resampler: StreamResampler | None = None
        if self.codec_rate != sample_rate:
            self._resampler = StreamResampler(sample_rate, self.codec_rate)
        self._time_base = Fraction(1, self.codec_rate)

    def _open(self, sink: object) -> tuple[av.container.OutputContainer, av.audio.stream.AudioStream]:
        rate = self.codec_rate
        container = av.open(
            sink, mode="w", format=self.spec.container,
            container_options=_container_options(self.spec, rate, self.mode),
        )
        stream = container.add_stream(self.spec.codec, rate=rate, layout="mono")
        ctx = stream.codec_context
        ctx.format = self.spec.frame_format
        if self.spec.bitrate is not None:
            ctx.bit_rate = self.spec.bitrate(rate)
        ctx.time_base = self._time_base
        ctx.options = _codec_options(self.spec, rate, self.mode)
        return container, stream

    def _frame(self, samples: np.ndarray, pts: int) -> av.AudioFrame:
        if self.spec.frame_format == "s16":
            data = to_int16(samples)
        else:
            data = np.ascontiguousarray(samples, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(data[np.newaxis, :], format=self.spec.frame_format, layout="mono")
        frame.sample_rate = self.codec_rate
        frame.time_base = self._time_base
        frame.pts = pts
        return frame

    def _to_codec_rate(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._resampler is None:
            return samples
        return self._resampler.process(samples, last=last)


class _AvFileEncoder(_AvEncoderBase):
    def __init__(self, spec: FormatSpec, sample_rate: int) -> None:
        super().__init__(spec, sample_rate, "file")
        #: AAC chunks are cut on whole frames; the rest waits for the next call
        self._frame_align = _AAC_FRAME if spec.codec == "aac" else 0
        self._held = np.zeros(0, dtype=np.float32)

    def _write(self, samples: np.ndarray) -> bytes:
        samples = self._to_codec_rate(samples)
        if self._frame_align:
            samples = np.concatenate([self._held, samples])
            cut = len(samples) - len(samples) % self._frame_align
            samples, self._held = samples[:cut], samples[cut:]
        return self._encode_file(samples)

    def _finish(self, samples: np.ndarray) -> bytes:
        # one file: the last piece, the resampler's flush and the AAC partial frame
        tail = self._to_codec_rate(samples, last=True)
        if self._frame_align:
            tail = np.concatenate([self._held, tail])
            self._held = np.zeros(0, dtype=np.float32)
        return self._encode_file(tail)

    def _encode_file(self, samples: np.ndarray) -> bytes:
        if not len(samples):
            return b""
        buf = io.BytesIO()  # seekable: muxers finalise headers (LAME tag, STREAMINFO, moov)
        container, stream = self._open(buf)
        with container:
            container.mux(stream.encode(self._frame(samples, 0)))
            container.mux(stream.encode(None))
        data = buf.getvalue()
        if self.spec.container == "mp3":
            data = fix_lame_padding(data, len(samples))
        return data


def _crc16(data: bytes) -> int:
    """CRC-16/ARC (reflected 0x8005, init 0), as the LAME tag uses."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def fix_lame_padding(mp3: bytes, samples: int) -> bytes:
    """Rewrite the end padding in the LAME tag of an FFmpeg-written mono MP3.

    FFmpeg's muxer records only the last packet's discard count, but libmp3lame sometimes
    spreads the padding over the last two packets; decoders then play up to 46 samples
    too many. The true value follows from the frame count, encoder delay and input length.
    """
    if len(mp3) < 4 or mp3[0] != 0xFF or (mp3[1] & 0xE0) != 0xE0:
        raise ValueError("MP3 data does not start with a frame header")
    mpeg1 = (mp3[1] >> 3) & 0b11 == 0b11
    spf = 1152 if mpeg1 else 576
    xing = 4 + (17 if mpeg1 else 9)  # header + mono side info
    if mp3[xing:xing + 4] not in (b"Info", b"Xing") or not mp3[xing + 7] & 1:
        raise ValueError("MP3 data has no Xing/Info tag with a frame count")
    frames = int.from_bytes(mp3[xing + 8:xing + 12], "big")
    pos = xing + 141  # 12-bit delay, 12-bit padding (FFmpeg's fixed tag layout)
    delay = int.from_bytes(mp3[pos:pos + 3], "big") >> 12
    padding = frames * spf - delay - samples
    if not 0 <= padding < 1 << 12:
        raise ValueError(f"MP3 padding out of range: {padding}")
    out = bytearray(mp3)
    out[pos:pos + 3] = ((delay << 12) | padding).to_bytes(3, "big")
    crc_pos = xing + 154
    out[crc_pos:crc_pos + 2] = b"\0\0"
    out[crc_pos:crc_pos + 2] = _crc16(bytes(out[:190])).to_bytes(2, "big")
    return bytes(out)


class _AvStreamEncoder(_AvEncoderBase):
    def __init__(self, spec: FormatSpec, sample_rate: int) -> None:
        super().__init__(spec, sample_rate, "stream")
        self._sink = _Sink()
        self._container, self._stream = self._open(self._sink)
        self._container.start_encoding()  # header now, so even an empty stream is valid
        self._pts = 0

    def _encode(self, samples: np.ndarray) -> None:
        if len(samples):
            self._container.mux(self._stream.encode(self._frame(samples, self._pts)))
            self._pts += len(samples)

    def _write(self, samples: np.ndarray) -> bytes:
        self._encode(self._to_codec_rate(samples))
        return self._sink.take()

    def _flush(self) -> bytes:
        if self._resampler is not None:
            self._encode(self._resampler.process(np.zeros(0, dtype=np.float32), last=True))
        self._container.mux(self._stream.encode(None))
        self._container.close()
        return self._sink.take()
