"""Client JSON must be Unicode text: escapes may spell characters, not lone surrogates."""
from __future__ import annotations

import pytest

from ttsplatform.json_text import loads_text


@pytest.mark.parametrize("raw, expected", [
    ('{"text": "\\u4f60\\u597d"}', {"text": "你好"}),  # escaped as by json.dumps' default
    ('{"text": "\\ud83d\\ude00"}', {"text": "😀"}),  # a surrogate pair is one character
    (b'{"text": "\xe4\xbd\xa0"}', {"text": "你"}),
    ('{"a": ["\\\\ud800"]}', {"a": ["\\ud800"]}),  # an escaped backslash, then plain letters
])
def test_text_and_escaped_characters_pass(raw, expected) -> None:
    assert loads_text(raw) == expected


@pytest.mark.parametrize("raw", ['{"text": "\\ud800"}', '{"a": {"b": ["x\\udfff"]}}', b'["\\ud83d"]',
                                 '{"\\ud800": 1}'])
def test_a_lone_surrogate_anywhere_is_refused(raw) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        loads_text(raw)
