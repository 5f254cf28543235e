"""Reading a clone prompt's audio from base64, a data URI, an http(s) URL or a file.

How ``prompt_audio`` is told apart (surrounding whitespace ignored):

1. ``http://`` / ``https://`` (any case): a URL, fetched by :mod:`voices.url_fetch`.
2. ``data:``: a data URI; it must be ``data:<any type>;base64,<data>``.
3. any other ``scheme:`` prefix (``file:``, ``ftp:``...): refused (400). Windows drive
   letters (``C:\\`` / ``C:/``) are not schemes.
4. Base64 text never contains ``.``, ``~``, ``\\``, ``:``, ``%`` and the like. A string
   of at most 4096 characters without line breaks that has such a character is a
   *path*: if it starts like one (``/``, ``./``, ``../``, ``~``, ``\\\\``, a drive
   letter) its errors are reported as path errors (404/403); otherwise it is used only
   if it names a readable, allowed file, else the "neither" error below.
5. A string made only of base64 characters (``/`` included, so an mp3's base64 can start
   with ``//``) is a path only if it names a readable, allowed file, or if it starts
   like a path and is at most 256 characters long (too short to hold a 1 s prompt).
   Everything else is base64; text that does not decode gives 400 "prompt_audio is
   neither valid base64, a URL nor a readable file path".

The audio format is recognised by content, from magic bytes, and decoded with PyAV
from memory by *that* whitelisted demuxer only, so untrusted bytes never reach one of
FFmpeg's other few hundred demuxers and raw PCM cannot be "recognised" as something
exotic. Base64 bytes in no known container are raw mono s16le PCM (the original
servers' convention, 16 kHz unless ``sample_rate`` says otherwise); bytes from a URL
or file must be a known container.
"""

from __future__ import annotations

import base64
import binascii
import io
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import soxr

from core.errors import ApiError, PayloadTooLarge
from voices.safe_paths import MAX_PATH_CHARS, read_client_file, resolve_client_path
from voices.speech_check import MIN_VOICED_SECONDS, require_speech
from voices.url_fetch import fetch_url

MIB = 1024 * 1024
RAW_PCM = "raw-pcm-s16le"
MIN_RAW_SAMPLE_RATE = 8000
MAX_RAW_SAMPLE_RATE = 48000
NEITHER = "prompt_audio is neither valid base64, a URL nor a readable file path"
SourceKind = Literal["url", "data-uri", "base64", "path"]

# FFmpeg demuxer -> the name we report.
_CONTAINERS = {
    "wav": "wav",
    "mp3": "mp3",
    "flac": "flac",
    "ogg": "ogg",
    "mov": "mp4",
    "matroska": "webm",
    "aac": "aac",
    "aiff": "aiff",
}
# Containers whose duration comes from a header, so a shortfall means truncation. (wav is
# checked from its data chunk's size: FFmpeg clamps a wav's duration to the bytes present.)
_HEADER_DURATION = {"flac", "mp4", "webm", "aiff"}
# PCM containers declare their exact length; others' declared durations are estimates.
_EXACT_LENGTH = {"wav", "aiff"}
_EXACT_SLACK_S = 0.05
# wav data sizes that streaming writers put in the header instead of the real one
_WAV_UNKNOWN_SIZE = 0x7FFF0000
_KNOWN = "wav, mp3, flac, ogg (opus/vorbis), m4a/aac, webm, aiff"
_MIN_DECODED_RATE, _MAX_DECODED_RATE = 8000, 192000

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/\-_=\s]*")
_PATH_PREFIXES = ("/", "./", "../", "~", "\\\\", ".\\", "..\\")
_SHORT_PATH = 256
_URLSAFE = str.maketrans("-_", "+/")


@dataclass(frozen=True)
class PromptSourcePolicy:
    """Where prompt audio may come from. ``path_roots=()`` turns paths off."""

    path_roots: tuple[Path, ...] | None
    allow_private_urls: bool
    max_bytes: int = 20 * MIB
    url_timeout_s: float = 10.0


@dataclass(frozen=True)
class PromptLimits:
    max_bytes: int = 20 * MIB
    min_seconds: float = 1.0
    max_seconds: float = 30.0
    silence_dbfs: float = -50.0
    #: voiced speech a prompt must hold (:mod:`voices.speech_check`); 0 turns the check off
    min_voiced_seconds: float = MIN_VOICED_SECONDS


@dataclass
class PromptAudio:
    samples: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int
    raw: bytes  # the original bytes, kept so features can be re-derived later
    container: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def read_prompt_audio(
    source: str,
    *,
    policy: PromptSourcePolicy,
    limits: PromptLimits,
    raw_sample_rate: int = 16000,
) -> PromptAudio:
    """Fetch, decode and vet a clone prompt. Blocking; run it in a worker thread.

    The byte cap is the smaller of ``policy.max_bytes`` and ``limits.max_bytes``.
    """
    rate = validate_raw_sample_rate(raw_sample_rate)
    if not isinstance(source, str):
        raise ApiError("prompt_audio must be a string")
    text = source.strip()
    if not text:
        raise ApiError("prompt_audio is empty")
    max_bytes = min(policy.max_bytes, limits.max_bytes)
    if len(text) > _max_text_chars(max_bytes):  # before any parsing: no source is this long
        raise PayloadTooLarge(f"prompt_audio is too large (limit {max_bytes} bytes)")

    kind, payload = classify_source(text, policy.path_roots)
    if kind == "url":
        data = fetch_url(
            payload,
            max_bytes=max_bytes,
            timeout_s=policy.url_timeout_s,
            allow_private=policy.allow_private_urls,
        )
    elif kind == "path":
        data = read_client_file(payload, policy.path_roots, max_bytes=max_bytes)
    else:
        invalid = NEITHER if kind == "base64" else "prompt_audio data URI does not hold valid base64"
        data = decode_base64_text(payload, max_bytes=max_bytes, invalid_message=invalid)
    if not data:
        raise ApiError("prompt_audio is empty")

    samples, sample_rate, container = decode_audio_bytes(
        data,
        raw_sample_rate=rate,
        max_seconds=limits.max_seconds,
        allow_raw_pcm=kind in ("base64", "data-uri"),
    )
    duration = len(samples) / sample_rate
    if duration < limits.min_seconds:
        raise ApiError(f"prompt audio is too short ({duration:.2f} s; at least {limits.min_seconds:g} s needed)")
    loudest = loudest_dbfs(samples, sample_rate)
    if loudest < limits.silence_dbfs:
        raise ApiError(f"prompt audio is silent (loudest part {loudest:.1f} dBFS, below {limits.silence_dbfs:g} dBFS)")
    if limits.min_voiced_seconds > 0:
        require_speech(samples, sample_rate, min_voiced_seconds=limits.min_voiced_seconds)
    return PromptAudio(samples=samples, sample_rate=sample_rate, raw=data, container=container)


def validate_raw_sample_rate(value: object) -> int:
    """The ``sample_rate`` override: an int (or digit string) in 8000..48000."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ApiError(f"sample_rate must be an integer between {MIN_RAW_SAMPLE_RATE} and {MAX_RAW_SAMPLE_RATE}")
    value = int(value)
    if not MIN_RAW_SAMPLE_RATE <= value <= MAX_RAW_SAMPLE_RATE:
        raise ApiError(f"sample_rate must be between {MIN_RAW_SAMPLE_RATE} and {MAX_RAW_SAMPLE_RATE}, got {value}")
    return value


def classify_source(text: str, path_roots: tuple[Path, ...] | None) -> tuple[SourceKind, str]:
    """Apply the module docstring's rule; returns the kind and what to read."""
    head = text[:8].lower()
    if head.startswith(("http://", "https://")):
        return "url", text
    if head.startswith("data:"):
        return "data-uri", _data_uri_payload(text)
    explicit = text.startswith(_PATH_PREFIXES) or _DRIVE.match(text) is not None
    if not explicit and (scheme := _SCHEME.match(text)):
        raise ApiError(f"prompt_audio URL scheme {scheme.group()!r} is not supported; use http or https")

    could_be_path = len(text) <= MAX_PATH_CHARS and "\n" not in text and "\r" not in text
    could_be_base64 = _BASE64_TEXT.fullmatch(text) is not None
    if could_be_path and not could_be_base64:
        if explicit or _names_allowed_file(text, path_roots):
            return "path", text
        raise ApiError(NEITHER)
    if could_be_path and ((explicit and len(text) <= _SHORT_PATH) or _names_allowed_file(text, path_roots)):
        return "path", text
    if could_be_base64:
        return "base64", text
    raise ApiError(NEITHER)


def decode_base64_text(text: str, *, max_bytes: int, invalid_message: str = NEITHER) -> bytes:
    """Lenient base64: whitespace, the urlsafe alphabet and missing padding are fine.

    The size is checked from the text's length before anything is decoded.
    """
    if len(text) > _max_text_chars(max_bytes):
        raise PayloadTooLarge(f"prompt_audio is too large (limit {max_bytes} bytes)")
    compact = "".join(text.split()).translate(_URLSAFE).rstrip("=")
    if (len(compact) * 3) // 4 > max_bytes:
        raise PayloadTooLarge(f"prompt_audio is too large (limit {max_bytes} bytes)")
    if len(compact) % 4 == 1 or "=" in compact:
        raise ApiError(invalid_message)
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(invalid_message) from None


def decode_audio_bytes(
    data: bytes,
    *,
    raw_sample_rate: int = 16000,
    max_seconds: float | None = None,
    allow_raw_pcm: bool = True,
) -> tuple[np.ndarray, int, str]:
    """Decode to mono float32. Returns ``(samples, sample_rate, container)``.

    Decoding stops as soon as ``max_seconds`` is exceeded.
    """
    if not data:
        raise ApiError("prompt audio is empty")
    demuxer = sniff_container(data)
    if demuxer is None:
        if not allow_raw_pcm:
            raise ApiError(f"prompt audio is not in a recognised format ({_KNOWN})")
        return _decode_raw_pcm(data, raw_sample_rate, max_seconds), raw_sample_rate, RAW_PCM
    return _decode_container(data, demuxer, max_seconds)


def sniff_container(data: bytes) -> str | None:
    """The FFmpeg demuxer for ``data``'s magic bytes, or None."""
    start = _skip_id3(data)
    head = data[start : start + 12]
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[4:8] == b"ftyp":
        return "mov"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if _frames_chain(data, start, _adts_frame_length):
        return "aac"
    if _frames_chain(data, start, _mp3_frame_length):
        return "mp3"
    if start > 0:
        return "mp3"  # an ID3 tag before something else: let the mp3 demuxer resync
    return None


def loudest_dbfs(samples: np.ndarray, sample_rate: int) -> float:
    """RMS level (re full scale 1.0) of the loudest 50 ms window, DC removed."""
    if samples.size == 0:
        return float("-inf")
    win = max(1, sample_rate // 20)
    usable = samples.size // win * win
    frames = samples[:usable].reshape(-1, win) if usable else samples[None, :]
    frames = frames - frames.mean(axis=1, keepdims=True)
    rms = float(np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)).max())
    return 20.0 * float(np.log10(max(rms, 1e-12)))


def _max_text_chars(max_bytes: int) -> int:
    """Longest base64 text that can hold ``max_bytes``, with room for line breaks."""
    chars = (max_bytes + 2) // 3 * 4
    return chars + chars // 16 + 64


def _names_allowed_file(text: str, path_roots: tuple[Path, ...] | None) -> bool:
    try:
        resolve_client_path(text, path_roots, must_exist=True, kind="file")
    except ApiError:
        return False
    return True


def _data_uri_payload(text: str) -> str:
    comma = text.find(",", 0, 512)
    if comma < 0:
        raise ApiError("prompt_audio data URI has no ',' before its data")
    if not text[5:comma].lower().endswith(";base64"):
        raise ApiError("prompt_audio data URI must be base64 (data:<type>;base64,...)")
    return text[comma + 1 :]


def _decode_raw_pcm(data: bytes, rate: int, max_seconds: float | None) -> np.ndarray:
    if len(data) % 2:
        raise ApiError(
            f"prompt audio is not in a recognised format ({_KNOWN}) and, as raw 16-bit PCM, "
            f"has an odd number of bytes ({len(data)})"
        )
    if max_seconds is not None and len(data) // 2 > max_seconds * rate:
        raise _too_long(max_seconds)
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def _decode_container(data: bytes, demuxer: str, max_seconds: float | None) -> tuple[np.ndarray, int, str]:
    label = _CONTAINERS[demuxer]
    if demuxer == "wav":
        _check_wav_length(data)
    chunks: list[np.ndarray] = []
    total = 0
    rate = 0
    declared: float | None = None
    try:
        with av.open(io.BytesIO(data), mode="r", format=demuxer) as container:
            if container.format.name not in _CONTAINERS:
                raise ApiError(f"prompt audio is not in a recognised format ({_KNOWN})")
            if not container.streams.audio:
                raise ApiError(f"prompt audio ({label}) contains no audio stream")
            stream = container.streams.audio[0]
            if label in _HEADER_DURATION or (label == "mp3" and _has_vbr_header(data)):
                declared = _declared_seconds(container, stream)
            for frame in container.decode(stream):
                mono = _frame_to_mono(frame)
                if not rate:
                    rate = int(frame.sample_rate)
                    if not _MIN_DECODED_RATE <= rate <= _MAX_DECODED_RATE:
                        raise ApiError(f"prompt audio has an unsupported sample rate ({rate} Hz)")
                elif frame.sample_rate != rate:
                    mono = soxr.resample(mono, frame.sample_rate, rate).astype(np.float32)
                chunks.append(mono)
                total += mono.size
                if max_seconds is not None and total > max_seconds * rate:
                    raise _too_long(max_seconds)
    except (av.FFmpegError, EOFError, ValueError):
        raise ApiError(f"prompt audio could not be decoded as {label}: the file is corrupt or truncated") from None
    if total == 0:
        raise ApiError(f"prompt audio ({label}) contains no decodable audio")
    got = total / rate
    slack = _EXACT_SLACK_S if label in _EXACT_LENGTH else max(0.5, 0.1 * (declared or 0.0))
    if declared is not None and declared - got > slack:
        raise _truncated(label, declared, got)
    samples = np.clip(np.concatenate(chunks), -1.0, 1.0).astype(np.float32, copy=False)
    return samples, rate, label


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    arr = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    if arr.dtype.kind == "u":
        bits = arr.dtype.itemsize * 8
        floats = (arr.astype(np.float32) - 2 ** (bits - 1)) / 2 ** (bits - 1)
    elif arr.dtype.kind == "i":
        floats = arr.astype(np.float32) / 2 ** (arr.dtype.itemsize * 8 - 1)
    else:
        floats = arr.astype(np.float32, copy=False)
    mono = floats.mean(axis=0) if channels > 1 else floats[0]
    return np.asarray(mono, dtype=np.float32)


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _check_wav_length(data: bytes) -> None:
    """Refuse a wav whose data chunk's header promises more bytes than the file holds.

    FFmpeg quietly decodes what is there, so a wav cut off in transfer would otherwise
    pass as a shorter prompt that no longer matches its transcript. Sizes that streaming
    writers use for "unknown" (0, 0xFFFFFFFF) are accepted; RF64/BW64 take the size from
    their ds64 chunk.
    """
    pos, byte_rate, ds64_size = 12, 0, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"ds64" and size >= 16 and body + 16 <= len(data):
            ds64_size = int.from_bytes(data[body + 8 : body + 16], "little")
        elif chunk == b"fmt " and size >= 12 and body + 12 <= len(data):
            byte_rate = int.from_bytes(data[body + 8 : body + 12], "little")
        elif chunk == b"data":
            if size == 0xFFFFFFFF and ds64_size is not None:
                size = ds64_size
            elif size >= _WAV_UNKNOWN_SIZE:
                return
            present = len(data) - body
            if byte_rate and size and (size - present) / byte_rate > _EXACT_SLACK_S:
                raise _truncated("wav", size / byte_rate, present / byte_rate)
            return
        pos = body + size + (size & 1)


def _truncated(label: str, declared: float, got: float) -> ApiError:
    return ApiError(
        f"prompt audio ({label}) is truncated: it declares {declared:.2f} s but only {got:.2f} s could be decoded"
    )


def _too_long(max_seconds: float) -> ApiError:
    return ApiError(f"prompt audio is too long (more than {max_seconds:g} s)")


def _skip_id3(data: bytes) -> int:
    """Offset just past any leading ID3v2 tags."""
    pos = 0
    while data[pos : pos + 3] == b"ID3" and len(data) >= pos + 10:
        size_bytes = data[pos + 6 : pos + 10]
        if any(b & 0x80 for b in size_bytes):
            break
        size = 0
        for b in size_bytes:  # "syncsafe": 7 bits per byte
            size = size << 7 | b
        footer = 10 if data[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    return pos


def _has_vbr_header(data: bytes) -> bool:
    start = _skip_id3(data)
    first = data[start : start + 200]
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


_MP3_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1 layer III
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2/2.5 layer III
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _mp3_frame_length(h: bytes) -> int:
    """Length of the MPEG layer III frame whose header is ``h``, or 0."""
    if h[0] != 0xFF or h[1] & 0xE0 != 0xE0:
        return 0
    version, layer = (h[1] >> 3) & 3, (h[1] >> 1) & 3
    bitrate_index, rate_index, padding = h[2] >> 4, (h[2] >> 2) & 3, (h[2] >> 1) & 1
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return 0
    rate = _MP3_RATES[version][rate_index]
    if version == 3:
        return 144000 * _MP3_BITRATES[1][bitrate_index] // rate + padding
    return 72000 * _MP3_BITRATES[2][bitrate_index] // rate + padding


def _adts_frame_length(h: bytes) -> int:
    if h[0] != 0xFF or h[1] & 0xF6 != 0xF0 or (h[2] >> 2) & 0xF >= len(_ADTS_RATES):
        return 0
    length = ((h[3] & 0x03) << 11) | (h[4] << 3) | (h[5] >> 5)
    return length if length > 7 else 0


def _frames_chain(data: bytes, start: int, frame_length: Callable[[bytes], int]) -> bool:
    """Three consecutive valid frame headers (fewer if the data ends first)."""
    pos = start
    for seen in range(3):
        if len(data) < pos + 6:
            return seen > 0 and pos == len(data)
        length = frame_length(data[pos : pos + 6])
        if not length:
            return False
        pos += length
    return True
