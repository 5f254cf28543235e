"""Word and character error rates (quality benchmark, refinement's listening guard), with the text normalisation they need.

Both sides of a comparison go through the same normalisation: lower case, punctuation
removed, numbers written out (English words; Chinese numerals), and for Chinese,
traditional characters mapped to simplified (``zhconv``, if installed; Whisper writes
either) and spaces dropped so characters are compared one by one. Errors are the
Levenshtein distance in words (English) or characters (Chinese) over the reference length,
summed over utterances before dividing (a corpus rate, not a mean of rates).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ZH_DIGITS = "零一二三四五六七八九"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def english_number(n: int) -> str:
    """0 <= n < 10**9 in words, e.g. 1905 -> "one thousand nine hundred five" (no "and")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            return f"{english_number(head)} {name}" + ("" if rest == 0 else " " + english_number(rest))
    raise AssertionError("unreachable")


def chinese_number(n: int) -> str:
    """0 <= n < 10**8 in Chinese numerals as read aloud, e.g. 15 -> 十五, 305 -> 三百零五."""
    if n < 10:
        return _ZH_DIGITS[n]
    if n < 20:
        return "十" + ("" if n == 10 else _ZH_DIGITS[n % 10])
    if n >= 10**4:
        head, rest = divmod(n, 10**4)
        tail = "" if rest == 0 else ("零" if rest < 1000 else "") + _small_chinese(rest)
        return chinese_number(head) + "万" + tail
    return _small_chinese(n)


def _small_chinese(n: int) -> str:
    out, zero = "", False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit:
            if zero and out:
                out += "零"
            out += _ZH_DIGITS[digit] + unit
            zero = False
        else:
            zero = True
    return out


def _spell_numbers(text: str, speller: object) -> str:
    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if "." in token:  # 3.5 -> three point five
            whole, _, frac = token.replace(",", "").partition(".")
            point = " point " if speller is english_number else "点"
            sep = " " if speller is english_number else ""
            return speller(int(whole)) + point + sep.join(speller(int(d)) for d in frac)  # type: ignore[operator]
        value = int(token.replace(",", ""))
        spelled = speller(value) if value < 10**8 else token  # type: ignore[operator]
        return f" {spelled} " if speller is english_number else spelled

    return _NUMBER.sub(one, text)


def _strip_punctuation(text: str) -> str:
    # Apostrophes inside words are kept ("don't"); every other punctuation or symbol becomes a space.
    chars = []
    for i, ch in enumerate(text):
        if ch in "'’" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum():
            chars.append("'")
        elif unicodedata.category(ch)[0] in "PS":
            chars.append(" ")
        else:
            chars.append(ch)
    return "".join(chars)


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese when ``zhconv`` is installed; unchanged otherwise."""
    try:
        import zhconv
    except ImportError:
        return text
    return zhconv.convert(text, "zh-cn")


def simplified_available() -> bool:
    try:
        import zhconv  # noqa: F401
    except ImportError:
        return False
    return True


def normalize_en(text: str) -> list[str]:
    """English words: lower case, numbers spelled out, punctuation removed, hyphens split."""
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ")
    text = _spell_numbers(text, english_number)
    return _strip_punctuation(text).split()


def normalize_zh(text: str) -> list[str]:
    """Chinese characters (and any Latin words), simplified, numbers in Chinese numerals."""
    text = to_simplified(unicodedata.normalize("NFKC", text)).lower()
    text = _spell_numbers(text, chinese_number)
    tokens: list[str] = []
    for word in _strip_punctuation(text).split():
        # CJK characters one by one; a run of anything else (a Latin word) stays one token.
        tokens += [t for t in re.split(r"([\u3400-\u4dbf\u4e00-\u9fff])", word) if t]
    return tokens


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance: substitutions + deletions + insertions."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass
class ErrorCount:
    """Summed edits and reference tokens over utterances; ``rate`` is their ratio."""

    edits: int = 0
    tokens: int = 0

    def add(self, ref: Sequence[str], hyp: Sequence[str]) -> float:
        edits = edit_distance(ref, hyp)
        self.edits += edits
        self.tokens += len(ref)
        return edits / len(ref) if ref else float(bool(hyp))

    @property
    def rate(self) -> float | None:
        return self.edits / self.tokens if self.tokens else None


def normalize(text: str, language: str) -> list[str]:
    return normalize_zh(text) if language == "zh" else normalize_en(text)


def error_rate(pairs: Iterable[tuple[str, str]], language: str) -> float | None:
    """Corpus WER (``en``) or CER (``zh``) of (reference, hypothesis) pairs."""
    count = ErrorCount()
    for ref, hyp in pairs:
        count.add(normalize(ref, language), normalize(hyp, language))
    return count.rate


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def cjk_count(text: str) -> int:
    return len(_CJK.findall(text))
