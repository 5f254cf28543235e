"""Strict request schemas for the REST endpoints: the first problem is reported, clearly."""
from __future__ import annotations

import unicodedata
from typing import Any

from core.json_text import loads_text
from voices.errors import InvalidRequest

MAX_PROMPT_ID_CHARS = 128
MAX_PROMPT_TEXT_CHARS = 1000
MAX_IDS_PER_REQUEST = 10000
#: Unicode categories an id may not hold: controls, format characters, surrogates.
ID_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("request body must be a JSON object")
    try:
        data = loads_text(body)
    except ValueError as exc:  # bad JSON, bad UTF-8 (UnicodeDecodeError) or a lone surrogate
        raise InvalidRequest(f"request body is not valid JSON Unicode text: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    return data


def prompt_id(data: dict[str, Any], field: str = "prompt_id") -> str:
    value = data.get(field)
    if value is None:
        raise InvalidRequest(f"{field} is required")
    return check_prompt_id(value, field)


def check_prompt_id(value: Any, field: str = "prompt_id") -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string")
    if not value.strip():
        raise InvalidRequest(f"{field} must not be empty")
    if len(value) > MAX_PROMPT_ID_CHARS:
        raise InvalidRequest(f"{field} must be at most {MAX_PROMPT_ID_CHARS} characters")
    if any(unicodedata.category(ch) in ID_FORBIDDEN_CATEGORIES for ch in value):
        raise InvalidRequest(f"{field} must not contain control characters")
    return value


def required_text(data: dict[str, Any], field: str, max_chars: int) -> str:
    value = data.get(field)
    if value is None:
        raise InvalidRequest(f"{field} is required")
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string")
    if not value.strip():
        raise InvalidRequest(f"{field} must not be empty")
    return _checked_text(value, field, max_chars)


def _checked_text(value: str, field: str, max_chars: int) -> str:
    if len(value) > max_chars:
        raise InvalidRequest(f"{field} must be at most {max_chars} characters")
    if "\x00" in value:  # no database stores it: refuse it here, before any work is done
        raise InvalidRequest(f"{field} must not contain NUL characters")
    return value


def optional_prompt_ids(data: dict[str, Any]) -> list[str]:
    """``prompt_ids`` omitted, null or empty means all of the caller's voices."""
    value = data.get("prompt_ids")
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("prompt_ids must be a list of strings")
    if len(value) > MAX_IDS_PER_REQUEST:
        raise InvalidRequest(f"prompt_ids may list at most {MAX_IDS_PER_REQUEST} ids")
    ids = [check_prompt_id(v, "prompt_ids[]") for v in value]
    return list(dict.fromkeys(ids))


def optional_sample_rate(data: dict[str, Any]) -> int | None:
    value = data.get("sample_rate")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 8000 <= value <= 48000:
        raise InvalidRequest("sample_rate must be an integer between 8000 and 48000")
    return value


def optional_text(data: dict[str, Any], field: str, max_chars: int) -> str:
    value = data.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string")
    return _checked_text(value, field, max_chars).strip()
