"""Make a piece of text speakable: strip markup, pictographs and control characters.

Contract: ``clean_text`` is pure and is applied by the segmenter to each *complete
clause*, never to raw stream pieces, so markup split across pieces is never seen
half-way. Markup split across *clauses* (say ``**bold, still bold**`` cut at the comma)
still cleans up, because the inline rules also remove unpaired markers. Clauses never
span a newline, so the lines inside a code fence are read like prose; only the fence
lines themselves vanish.

Numbers, dates, money and units are left for the phonemizer: digits and symbols such as
``$ % ¥ € ° : / - .`` pass through unchanged.
"""
from __future__ import annotations

import html
import re
import unicodedata

# Line-level Markdown (applied with re.M, so they work on whole documents too).
_FENCE_LINE = re.compile(r"^[ \t]*(?:```|~~~)[\w+#.-]*[ \t]*$", re.M)
_HRULE = re.compile(r"^[ \t]*(?:[-*_=][ \t]*){3,}$", re.M)
_TABLE_RULE = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{2,}:?[ \t]*\|?)+[ \t]*$", re.M)
_HEADING = re.compile(r"^[ \t]*#{1,6}(?:[ \t]+|$)", re.M)
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.M)
_BULLET = re.compile(r"^[ \t]*[-*+•·▪‣◦●○][ \t]+", re.M)

# Inline Markdown.
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\)")
_REF_LINK = re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]")
# The "](url)" half of a link whose "[" ended up in an earlier clause.
_LINK_TAIL = re.compile(r"\]\((?:https?://|www\.|/|#|mailto:)[^()\s]*\)")
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^<>\s]+)>")
_FENCE = re.compile(r"```|~~~")
_STRONG = re.compile(r"\*{2,}|_{2,}|~~")
# A single * or _ at the edge of a Latin word or number is emphasis; inside "2*3" or
# "snake_case" it is text. CJK has no spaces, so next to CJK it is always emphasis.
_LATIN = r"A-Za-z0-9\u00C0-\u024F"
_EMPHASIS = re.compile(rf"(?<![{_LATIN}*])[*_](?=\S)|(?<=\S)[*_](?![{_LATIN}*])")
_ESCAPE = re.compile(r"\\(?=[^\w\s])")

# HTML.
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
# Only known tag names with name="value" attributes, so "x<b and c>d" stays text.
_ATTRS = r"""(?:\s+[\w:-]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'<>]+))*\s*/?>"""
_BLOCK_TAG = re.compile(
    r"</?(?:br|p|div|li|ul|ol|tr|table|h[1-6]|blockquote|pre|section|article)" + _ATTRS, re.I
)
_TAG = re.compile(
    r"</?(?:a|abbr|b|bdi|big|body|caption|center|cite|code|col|dd|del|details|dfn|dl|dt|em|"
    r"figcaption|figure|font|footer|head|header|hr|html|i|img|ins|kbd|label|main|mark|nav|q|s|"
    r"samp|small|span|strike|strong|sub|summary|sup|tbody|td|tfoot|th|thead|time|tt|u|var)"
    + _ATTRS,
    re.I,
)

_SPACES = re.compile(r"[ \t]+")
_NEWLINES = re.compile(r" ?\n[\n ]*")

# Symbols (Unicode category So) that are read aloud; every other So is a pictograph.
_KEEP_SYMBOLS = frozenset("°℃℉№")


def _fullwidth_table() -> dict[int, str]:
    table = {ord(" "): " "}
    for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz%":
        table[ord(c) + 0xFEE0] = c
    return table


_FULLWIDTH = _fullwidth_table()


def _is_arrow(o: int) -> bool:
    return 0x2190 <= o <= 0x21FF or 0x27F0 <= o <= 0x27FF or 0x2900 <= o <= 0x297F or 0x2B00 <= o <= 0x2BFF


# A dropped pictograph before a Latin word leaves a space: "hello😀world", "Hi!😀Bye".
_GAP = "\x00"
_GAP_BETWEEN_WORDS = re.compile(rf"(?<=[{_LATIN}.,:;!?%)]){_GAP}+(?=[{_LATIN}])")


def _keep_char(ch: str) -> str:
    """The character as it should be spoken: '' or _GAP to drop it, ' ' or '\\n' for space."""
    if ch == "\n":
        return ch
    cat = unicodedata.category(ch)
    major = cat[0]
    o = ord(ch)
    if major in "LNP":
        return ch
    if major == "Z":
        return " " if cat == "Zs" else "\n"
    if cat == "Sc":
        return ch
    if cat == "Sm":
        return _GAP if _is_arrow(o) else ch
    if cat == "Sk":
        return _GAP if 0x1F3FB <= o <= 0x1F3FF else ch  # emoji skin tones
    if cat == "So":
        return ch if ch in _KEEP_SYMBOLS else _GAP
    if cat in ("Mn", "Mc"):
        # variation selectors turn characters into emoji; other marks are accents
        return "" if 0xFE00 <= o <= 0xFE0F or 0xE0100 <= o <= 0xE01EF else ch
    if cat == "Cc":
        return " " if ch in "\t\x0b\x0c" else ("\n" if ch == "\r" else "")
    return ""  # Me (keycaps), Cf (ZWJ, BOM, bidi), Co, Cs, Cn


def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n")

    text = html.unescape(text)
    text = _COMMENT.sub("", text)
    text = _BLOCK_TAG.sub("\n", text)
    text = _TAG.sub("", text)
    text = _AUTOLINK.sub(r"\1", text)

    text = _FENCE_LINE.sub("", text)
    text = _TABLE_RULE.sub("", text)
    text = _HRULE.sub("", text)
    text = _QUOTE.sub("", text)
    text = _HEADING.sub("", text)
    text = _BULLET.sub("", text)

    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _LINK_TAIL.sub("", text)
    text = _FENCE.sub("", text).replace("`", "")
    text = _ESCAPE.sub("", text)
    text = _STRONG.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = text.replace("|", " ")

    text = "".join(_keep_char(ch) for ch in text.translate(_FULLWIDTH))
    text = _GAP_BETWEEN_WORDS.sub(" ", text).replace(_GAP, "")

    text = _SPACES.sub(" ", text)
    text = _NEWLINES.sub("\n", text)
    return text.strip(" \n")
