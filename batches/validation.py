"""The create body of a batch job, checked whole before anything is stored or queued."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from synthesis.encoding import FORMATS
from synthesis.request import DEFAULT_FORMAT, DEFAULT_SAMPLE_RATE, MAX_INSTRUCT_CHARS
from voices.errors import InvalidRequest
from voices.s3 import parse_s3_url
from voices.validation import check_prompt_id

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
MAX_ITEMS = 1000
MAX_NAME_CHARS = 200
DEFAULT_TTL_HOURS = 168
MAX_TTL_HOURS = 744
MAX_CALLBACK_URL_CHARS = 2048
MAX_DESTINATION_CHARS = 1024
#: fields a create body may have; anything else is a typo the client should hear about
FIELDS = frozenset({"prompt_id", "audio_format", "sample_rate", "instruct_text", "inputs", "timestamps",
                    "callback_url", "destination", "ttl_hours"})
ITEM_FIELDS = frozenset({"text", "name", "prompt_id"})


@dataclass(frozen=True)
class ItemSpec:
    text: str
    name: str
    #: the item's own voice, or the job's
    prompt_id: str


@dataclass(frozen=True)
class BatchSpec:
    prompt_id: str
    audio_format: str
    sample_rate: int
    instruct_text: str | None
    items: tuple[ItemSpec, ...]
    timestamps: bool
    callback_url: str
    destination: str
    ttl_hours: int

    @property
    def characters(self) -> int:
        return sum(len(item.text) for item in self.items)

    @property
    def prompt_ids(self) -> list[str]:
        return list(dict.fromkeys(item.prompt_id for item in self.items))

    def sha256(self) -> str:
        """The same job however the client spelled it (key order, defaults written out or not)."""
        canonical = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def check_batch_id(value: str) -> str:
    if not BATCH_ID_RE.match(value):
        raise InvalidRequest("batch_id must be 3-64 characters of A-Z, a-z, 0-9, '_' and '-'")
    return value


def parse_create(data: dict[str, Any], max_text_chars: int) -> BatchSpec:
    """The job ``data`` describes; InvalidRequest (400) names the first problem."""
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; a batch takes {', '.join(sorted(FIELDS))}")
    if data.get("prompt_id") is None:
        raise InvalidRequest("prompt_id is required: the voice of every item that does not name its own")
    prompt_id = check_prompt_id(data["prompt_id"], "prompt_id")
    fmt = _audio_format(data.get("audio_format"))
    rate = _sample_rate(data.get("sample_rate"), fmt)
    instruct = data.get("instruct_text")
    if instruct is not None:
        if not isinstance(instruct, str):
            raise InvalidRequest("instruct_text must be a string or null")
        if len(instruct) > MAX_INSTRUCT_CHARS or "\x00" in instruct:
            raise InvalidRequest(f"instruct_text must be at most {MAX_INSTRUCT_CHARS} characters, without NUL")
        instruct = instruct.strip() or None
    items = _items(data.get("inputs"), prompt_id, max_text_chars)
    timestamps = data.get("timestamps", False)
    if timestamps is None:
        timestamps = False
    if not isinstance(timestamps, bool):
        raise InvalidRequest("timestamps must be true or false")
    if timestamps:
        raise InvalidRequest("timestamps are not supported by batch jobs on this server yet")
    callback_url = _optional_string(data, "callback_url", MAX_CALLBACK_URL_CHARS, "an http(s) URL")
    destination = _optional_string(data, "destination", MAX_DESTINATION_CHARS, "an s3://bucket/prefix")
    if destination:
        destination = parse_s3_url(destination).url  # InvalidRequest when it is not one
    ttl = data.get("ttl_hours", DEFAULT_TTL_HOURS)
    if ttl is None:
        ttl = DEFAULT_TTL_HOURS
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_HOURS:
        raise InvalidRequest(f"ttl_hours must be an integer from 1 to {MAX_TTL_HOURS}")
    return BatchSpec(prompt_id, fmt, rate, instruct, items, False, callback_url, destination, ttl)


def _optional_string(data: dict[str, Any], field: str, max_chars: int, what: str) -> str:
    """A field that is absent, null, or a string of at most ``max_chars``: "" or the stripped string."""
    value = data.get(field)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_chars:
        raise InvalidRequest(f"{field} must be {what} of at most {max_chars} characters")
    return value.strip()


def _audio_format(value: Any) -> str:
    if value in (None, ""):
        return DEFAULT_FORMAT
    if not isinstance(value, str) or value.strip().lower() not in FORMATS:
        raise InvalidRequest(f"audio_format must be one of {', '.join(FORMATS)}")
    return value.strip().lower()


def _sample_rate(value: Any, fmt: str) -> int:
    if value is None:
        return DEFAULT_SAMPLE_RATE
    rates = FORMATS[fmt].sample_rates
    if isinstance(value, bool) or not isinstance(value, int) or value not in rates:
        raise InvalidRequest(f"sample_rate for {fmt} must be one of {', '.join(map(str, rates))}")
    return value


def _items(value: Any, prompt_id: str, max_text_chars: int) -> tuple[ItemSpec, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"inputs must be a list of 1 to {MAX_ITEMS} items")
    if len(value) > MAX_ITEMS:
        raise InvalidRequest(f"inputs may hold at most {MAX_ITEMS} items, not {len(value)}")
    items = []
    for i, raw in enumerate(value):
        where = f"inputs[{i}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"{where} must be an object with a text")
        unknown = sorted(set(raw) - ITEM_FIELDS)
        if unknown:
            raise InvalidRequest(f"{where}: unknown field {unknown[0]!r}; an item takes text, name and prompt_id")
        text = raw.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest(f"{where}.text must be a non-empty string")
        if len(text) > max_text_chars:
            raise InvalidRequest(f"{where}.text must be at most {max_text_chars} characters")
        if "\x00" in text:
            raise InvalidRequest(f"{where}.text must not contain NUL characters")
        name = raw.get("name")
        if name is None:
            name = ""
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or "\x00" in name:
            raise InvalidRequest(f"{where}.name must be a string of at most {MAX_NAME_CHARS} characters")
        own = raw.get("prompt_id")
        voice = check_prompt_id(own, f"{where}.prompt_id") if own is not None else prompt_id
        items.append(ItemSpec(text, name, voice))
    return tuple(items)
