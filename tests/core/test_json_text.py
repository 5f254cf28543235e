"""Client JSON must be Unicode text: escapes may spell characters, not lone surrogates."""
from __future__ import annotations

import pytest

from core.json_text import loads_text


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


@pytest.mark.parametrize("raw", ["[" * 100000 + "]" * 100000, b"{\"a\":" * 50000 + b"1" + b"}" * 50000,
                                 '{"x": ' + "[" * 33 + "]" * 33 + "}"])
def test_deep_nesting_is_refused_before_parsing(raw) -> None:
    with pytest.raises(ValueError, match="nests deeper"):
        loads_text(raw)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '{"text": "' + "[{" * 5000 + '\\"]", "n": [[1]]}'
    assert loads_text(text)["n"] == [[1]]
    loads_text("[" * 32 + "]" * 32)  # exactly the limit parses


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-32-be"])
def test_bodies_that_are_not_utf8_are_refused(encoding) -> None:
    body = '{"cache_dir": "\\ud800"}'.encode(encoding)
    with pytest.raises(ValueError):
        loads_text(body)
    with pytest.raises(ValueError, match="UTF-8"):
        loads_text('{"a": "ok"}'.encode(encoding))
