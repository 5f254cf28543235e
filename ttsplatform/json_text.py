"""JSON from clients is text, and must stay text: JSON escapes can spell a lone UTF-16
surrogate (``"\\ud800"``), which parses into a Python string that nothing downstream can
encode (Redis, the database, files), so such a message is refused where it is parsed."""
from __future__ import annotations

import json
from typing import Any


def loads_text(raw: str | bytes) -> Any:
    """``json.loads``; raises ValueError for invalid JSON and for a lone surrogate anywhere in it."""
    value = json.loads(raw)
    escaped = b"\\u" in raw if isinstance(raw, bytes) else "\\u" in raw
    if escaped:  # only an escape can produce a surrogate: raw frames and bodies are valid UTF-8
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("it contains a lone surrogate escape, which is not Unicode text") from None
    return value
