"""JSON from clients is UTF-8 text, shallow, and must stay text.

- Bytes must be UTF-8: ``json.loads`` would also guess UTF-16/32 from a body, and such a body
  slips past any byte-level check (``\\u`` is ``\\x00\\\\\\x00u`` in UTF-16).
- Nesting is bounded *before* parsing: the parser recurses once per level, so a body of
  ``"[" * 100000`` would raise RecursionError (a 500) instead of a clear 400.
- JSON escapes can spell a lone UTF-16 surrogate (``"\\ud800"``), which parses into a Python
  string that nothing downstream can encode (Redis, the database, files), so such a message
  is refused where it is parsed.
"""
from __future__ import annotations

import json
import re
from typing import Any

#: Deeper than any message of the API (bundle metadata included) nests.
MAX_DEPTH = 32

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def loads_text(raw: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted input; raises ValueError for invalid JSON, bytes that are not
    UTF-8, nesting deeper than ``max_depth`` and a lone surrogate anywhere in it."""
    text = _utf8(bytes(raw)) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    check_depth(text, max_depth)
    value = json.loads(text)
    if "\\u" in text:  # only an escape can produce a surrogate: decoded UTF-8 never holds one
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("it contains a lone surrogate escape, which is not Unicode text") from None
    return value


def _utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:  # JSON never holds a raw NUL; UTF-16/32 text of ASCII does
        raise ValueError("it is not UTF-8 text (UTF-16 and UTF-32 are not accepted)")
    return text


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise ValueError if arrays/objects in ``text`` nest deeper than ``max_depth``.

    Brackets inside strings do not count. Linear time; most texts hold too few brackets to
    nest that deep and are passed after two counts.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            if depth > max_depth:
                raise ValueError(f"it nests deeper than {max_depth} levels")
        else:
            depth -= 1
