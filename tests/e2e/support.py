"""Client-side helpers for end-to-end tests: a WebSocket client written against the
public protocol, and audio decoding of what the server returns."""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from websockets.sync.client import connect


@dataclass
class StreamResult:
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: seconds from sending the first text to receiving each audio message
    arrival: list[float] = field(default_factory=list)
    #: seconds from the start until the last text message was sent
    text_sent_at: float = 0.0
    close_code: int | None = None

    @property
    def audio(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if not m.get("error") and not m.get("is_end")]

    @property
    def end(self) -> dict[str, Any] | None:
        ends = [m for m in self.messages if m.get("is_end")]
        return ends[-1] if ends else None

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("error")]

    def chunks(self) -> list[bytes]:
        return [base64.b64decode(m["data"]) for m in self.audio]


def stream_tts(
    ws_url: str,
    req_params: dict[str, Any],
    pieces: Iterable[str],
    *,
    delay: float = 0.0,
    final_text: str = "",
    timeout: float = 120.0,
) -> StreamResult:
    """Send req_params, then each piece (done=false), then final_text with done=true; collect replies."""
    result = StreamResult()
    with connect(ws_url, open_timeout=10, close_timeout=5, max_size=None) as ws:
        start = time.monotonic()

        def receive() -> None:
            deadline = start + timeout
            while time.monotonic() < deadline:
                try:
                    raw = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
                except Exception as exc:  # closed by the server, or timed out
                    result.close_code = getattr(getattr(exc, "rcvd", None), "code", None)
                    return
                message = json.loads(raw)
                result.messages.append(message)
                result.arrival.append(time.monotonic() - start)
                if message.get("is_end") or message.get("error"):
                    return

        # Receive while sending, so arrival times are real even when text trickles in.
        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        try:
            ws.send(json.dumps({"req_params": req_params}))
            for piece in pieces:
                ws.send(json.dumps({"text": piece, "done": False}, ensure_ascii=False))
                if delay:
                    time.sleep(delay)
            ws.send(json.dumps({"text": final_text, "done": True}, ensure_ascii=False))
        except Exception:
            pass  # the server may close early after an error; the receiver has the reason
        result.text_sent_at = time.monotonic() - start
        receiver.join(timeout + 5)
    return result


def decode_audio(data: bytes, fmt: str, sample_rate: int) -> tuple[np.ndarray, int]:
    """Decode one chunk or a whole stream to mono float32; pcm is raw s16le at sample_rate."""
    if fmt == "pcm":
        assert len(data) % 2 == 0, "pcm must be whole 16-bit samples"
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, sample_rate
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        parts = [_mono(frame) for frame in container.decode(stream)]
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), rate


def _mono(frame: av.AudioFrame) -> np.ndarray:
    array = frame.to_ndarray()
    if array.dtype.kind == "i":
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
    array = array.astype(np.float32)
    if frame.format.is_planar:
        return array.mean(axis=0) if array.shape[0] > 1 else array[0]
    channels = len(frame.layout.channels)
    return array.reshape(-1, channels).mean(axis=1)


def rms_dbfs(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * np.log10(max(rms, 1e-6))


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    import wave

    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def s3_keys(env: dict[str, str], bucket: str, prefix: str, suffix: str = "") -> list[str]:
    """Keys under ``prefix`` in a server's S3 bucket (``env``: the server's environment)."""
    from voices.s3 import make_client

    client = make_client(env["TTS_S3_ENDPOINT_URL"], env["AWS_DEFAULT_REGION"], access_key=env["AWS_ACCESS_KEY_ID"],
                         secret_key=env["AWS_SECRET_ACCESS_KEY"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(suffix)]
