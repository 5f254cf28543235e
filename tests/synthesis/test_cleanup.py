from __future__ import annotations

import pytest

from synthesis.text.cleanup import clean_text

MARKDOWN = [
    ("**粗体**和*斜体*", "粗体和斜体"),
    ("__bold__ and _italic_ and ~~gone~~", "bold and italic and gone"),
    ("# 标题", "标题"),
    ("### Heading three", "Heading three"),
    ("#hashtag stays", "#hashtag stays"),
    ("- item one", "item one"),
    ("* item two", "item two"),
    ("+ item three", "item three"),
    ("• 项目", "项目"),
    ("1. first step", "1. first step"),
    ("> quoted text", "quoted text"),
    ("> - quoted item", "quoted item"),
    ("[链接文字](https://example.com/a_(b)) ok", "链接文字 ok"),
    ('[docs](https://example.com "title")', "docs"),
    ("![a cat](cat.png) sits", "a cat sits"),
    ("see [the spec][1]", "see the spec"),
    ("rest of a link](https://example.com/x) here", "rest of a link here"),
    ("<https://example.com>", "https://example.com"),
    ("use `foo()` now", "use foo() now"),
    ("```python", ""),
    ("```", ""),
    ("~~~", ""),
    ("---", ""),
    ("* * *", ""),
    ("|---|:--:|", ""),
    ("| a | b |", "a b"),
    ("still bold**，", "still bold，"),
    ("**半个粗体，", "半个粗体，"),
    (r"an \*escaped\* star", "an escaped star"),
]

HTML = [
    ("<b>bold</b> text", "bold text"),
    ('<a href="http://x.com/a.b">link</a>', "link"),
    ("one<br/>two", "one\ntwo"),
    ("<p>para</p><p>next</p>", "para\nnext"),
    ("<!-- note -->said", "said"),
    ("x<b and c>d", "x<b and c>d"),
    ("a < b > c", "a < b > c"),
    ("&amp; &lt;tag&gt; &nbsp;x", "& <tag> x"),
    ("&lt;b&gt;hi&lt;/b&gt;", "hi"),
]

SYMBOLS = [
    ("今天😀天气👍🏽很好✅", "今天天气很好"),
    ("👨\u200d👩\u200d👧 family 🇨🇳", "family"),
    ("1️⃣ one", "1 one"),
    ("A → B", "A B"),
    ("A→B", "A B"),
    ("hello😀world", "hello world"),
    ("好😀的", "好的"),
    ("Hi!😀Bye", "Hi! Bye"),
    ("★ star ♥", "star"),
    ("price $3.50, 20% off, 25°C, 10:30, 3/4, 1-2", "price $3.50, 20% off, 25°C, 10:30, 3/4, 1-2"),
    ("¥100 €5 £3 ₹9 ‰ ℃ № 5", "¥100 €5 £3 ₹9 ‰ ℃ № 5"),
    ("2 + 2 = 4, 3 × 4 ≈ 12, x ≤ y", "2 + 2 = 4, 3 × 4 ≈ 12, x ≤ y"),
    ("café naïve Straße Ørsted", "café naïve Straße Ørsted"),
    ("cafe\u0301", "café"),
    ("日本語のテキスト、ひらがなとカタカナ。", "日本語のテキスト、ひらがなとカタカナ。"),
    ("한국어 문장입니다.", "한국어 문장입니다."),
    ("「引号」『书名』《书》（括号）【注】", "「引号」『书名』《书》（括号）【注】"),
    ("C# and C++ and snake_case and 2*3", "C# and C++ and snake_case and 2*3"),
    ("a\u200bb\ufeffc\x07d\x00e", "abcde"),
    ("\ue000private", "private"),
]

WIDTH_AND_SPACE = [
    ("ＡＢＣ１２３％", "ABC123%"),
    ("ｇｐｔ４", "gpt4"),
    ("全角，标点！保持？", "全角，标点！保持？"),
    ("a\u3000b", "a b"),
    ("a \t  b", "a b"),
    ("a\u00a0b", "a b"),
    ("line1\n\n\n  line2  ", "line1\nline2"),
    ("one\r\ntwo\rthree", "one\ntwo\nthree"),
    ("  padded  ", "padded"),
    ("", ""),
    ("   \n  ", ""),
]


@pytest.mark.parametrize(("raw", "expected"), MARKDOWN + HTML + SYMBOLS + WIDTH_AND_SPACE)
def test_clean_text(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize("raw", [raw for raw, _ in MARKDOWN + HTML + SYMBOLS + WIDTH_AND_SPACE])
def test_clean_text_is_idempotent(raw: str) -> None:
    once = clean_text(raw)
    assert clean_text(once) == once


def test_plain_text_passes_unchanged() -> None:
    text = "我今天用了ChatGPT写code，效果不错。It works well, 真的! 3.14 e.g. example.com"
    assert clean_text(text) == text


def test_whole_document() -> None:
    doc = (
        "# Title\n\n"
        "Some **bold** text with a [link](https://example.com).\n\n"
        "```python\n"
        "```\n"
        "- first 🎉\n"
        "- second\n\n"
        "> quote\n"
    )
    assert clean_text(doc) == "Title\nSome bold text with a link.\nfirst\nsecond\nquote"
