"""The /tts wire protocol: parsing client messages and shaping server messages."""
from __future__ import annotations

from typing import Any

from api.errors import ProtocolError
from core.json_text import loads_text
from synthesis.encoding import FORMATS, MODES
from synthesis.request import DEFAULT_FORMAT, DEFAULT_SAMPLE_RATE, MAX_INSTRUCT_CHARS, TtsRequest
from voices.errors import InvalidRequest
from voices.validation import check_prompt_id

#: What a client may ask for is exactly what the encoders can make (one table, in encoding.py).
AUDIO_FORMATS = tuple(FORMATS)
CHUNK_MODES = MODES


def decode_message(text: str | None) -> dict[str, Any]:
    if text is None:
        raise ProtocolError("binary frames are not supported; send JSON text frames")
    try:
        message = loads_text(text)
    except ValueError as exc:
        raise ProtocolError(f"message is not valid JSON Unicode text: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("message must be a JSON object")
    return message


def parse_req_params(raw: Any) -> TtsRequest:
    if not isinstance(raw, dict):
        raise ProtocolError("req_params must be an object")
    prompt_id = raw.get("prompt_id")
    if not isinstance(prompt_id, str) or not prompt_id.strip():
        raise ProtocolError("req_params.prompt_id is required")
    try:
        check_prompt_id(prompt_id, "req_params.prompt_id")  # REST's rules: no voice can have another id
    except InvalidRequest as exc:
        raise ProtocolError(exc.message) from None
    fmt = raw.get("audio_format")
    fmt = DEFAULT_FORMAT if fmt in (None, "") else fmt
    if not isinstance(fmt, str) or fmt.strip().lower() not in AUDIO_FORMATS:
        raise ProtocolError(f"req_params.audio_format must be one of {', '.join(AUDIO_FORMATS)}")
    fmt = fmt.strip().lower()
    rate = raw.get("sample_rate")
    rate = DEFAULT_SAMPLE_RATE if rate in (None, "") else _as_int(rate)
    rates = FORMATS[fmt].sample_rates
    if rate not in rates:
        raise ProtocolError(f"req_params.sample_rate for {fmt} must be one of {', '.join(map(str, rates))}")
    instruct = raw.get("instruct_text")
    if instruct is not None and not isinstance(instruct, str):
        raise ProtocolError("req_params.instruct_text must be a string or null")
    if instruct is not None and len(instruct) > MAX_INSTRUCT_CHARS:
        raise ProtocolError(f"req_params.instruct_text must be at most {MAX_INSTRUCT_CHARS} characters")
    mode = raw.get("chunk_mode")
    mode = "file" if mode in (None, "") else mode
    if mode not in CHUNK_MODES:
        raise ProtocolError("req_params.chunk_mode must be 'file' or 'stream'")
    return TtsRequest(
        prompt_id=prompt_id,
        audio_format=fmt,
        sample_rate=rate,
        instruct_text=instruct.strip() or None if instruct else None,
        chunk_mode=mode,
    )


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    digits = value.strip() if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 9:  # int() takes more than a rate is
        return int(digits)
    return None


def parse_text_message(message: dict[str, Any]) -> tuple[str, bool]:
    text = message.get("text")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ProtocolError("text must be a string")
    done = message.get("done", False)
    if done is None:
        done = False
    if not isinstance(done, bool):
        raise ProtocolError("done must be true or false")
    return text, done


def chunk_message(request_id: str, index: int, data: str, request: TtsRequest) -> dict[str, Any]:
    return {
        "id": request_id,
        "error": False,
        "is_end": False,
        "index": index,
        "data": data,
        "audio_format": request.audio_format,
        "sample_rate": request.sample_rate,
    }


def end_message(request_id: str, count: int) -> dict[str, Any]:
    return {
        "id": request_id,
        "error": False,
        "is_end": True,
        "index": count,
        "data": None,
        "audio_format": None,
        "sample_rate": None,
    }


def error_message(message: str) -> dict[str, Any]:
    return {"error": True, "message": message}
