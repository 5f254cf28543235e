"""Cut streamed text (Chinese, English or mixed) into clauses for the TTS engine.

Length is measured in *units* of roughly equal speaking time: one CJK character
(Han, kana, hangul) or one digit is 1 unit, about one syllable; a Latin letter is 1/3
unit, so an average English word is 1.5-2 units; spaces, punctuation and symbols are 0.
A third of a unit is also about one phoneme, so ``max_chars`` units stay well inside
Kokoro's ~500-phoneme window for either language.

Rules, in order of strength:

* newline, and ``。！？；…`` always end a clause; ASCII ``! ? ;`` and a single ``.`` do
  only when what follows is not glued to them (a space, the end, CJK, ...), so "3.14",
  "example.com", "10:30", "1,000" and "?q=1" stay whole. ``.`` is also no break after an
  abbreviation (``Mr.``, ``e.g.``, ``U.S.A.``), a single-letter initial (but "5 m." and
  "-5°C." end sentences: that letter is a unit), or a list number
  ("1. ") that starts the clause. Two or more dots are an ellipsis.
* soft breaks ``，、：—`` (and ASCII ``,`` ``:`` under the same "not glued" test) end a
  clause only once it has ``first_min_chars`` units (first clause) or ``min_chars``.
  Numbers keep theirs: ``：`` between digits ("3：30") and the comma of a date ("March 5,
  2024") are no break.
* a clause that reaches ``first_max_chars`` / ``max_chars`` units is cut at the best
  earlier boundary: a soft break, else a space between words or the edge of a CJK
  character, never inside a Latin word or number unless the clause is one giant token.
* closing quotes/brackets and repeated marks after a break stay with their clause
  (``好！」`` ``"Why?!"``); a clause with no letter or digit is never emitted.

Streaming: ``feed`` consumes one character at a time and only decides a break once the
few characters that decide it have arrived (usually just the next one, which shows
whether a closing quote follows), so the clauses do not depend on how the text was cut
into pieces. The buffer holds one clause plus a few characters of lookahead, never more
than ``config.buffer_limit`` characters. Each finished clause goes through
``clean_text`` (markup, emoji) before it is returned; markup is never cut apart by the
segmenter's own rules except at the hard cap, and ``clean_text`` tolerates halves.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from synthesis.text.cleanup import clean_text

_HARD = frozenset("。！？；…‥｡")
_HARD_ASCII = frozenset("!?;")
_SOFT = frozenset("，、：︰—―")
_SOFT_ASCII = frozenset(",:–")
_CLOSERS = frozenset("」』”’\"')）】》〉〕〗］｝]}»›*_")
_OPENERS = frozenset("「『“‘\"'(（【《〈〔〖［｛[{«‹")
_BREAKS = _HARD | _HARD_ASCII | _SOFT | _SOFT_ASCII | {"."}
# Characters that may directly follow a break and belong to the clause it ends.
_TRAILING = _CLOSERS | _BREAKS
# Marks that mean nothing at the start of a clause ("，好的" after a dropped emoji).
_LEADING_JUNK = "".join(sorted(_BREAKS | (_CLOSERS - _OPENERS))) + " "
# After ASCII punctuation, these mean the punctuation is inside a token ("a.b/c", "1,000").
_GLUE = frozenset("/\\@_-&=#%+~'’`$*")
_MAX_TRAIL = 8
LOOKAHEAD = _MAX_TRAIL + 2
# Safety net against runs of symbols: a clause never holds more raw characters than this
# (plain text reaches the unit cap first, at about 3.7 characters per unit).
_RAW_PER_UNIT = 4
_RAW_SLACK = 32
# Marks kept in front of a clause's first word (an opening quote, say); more are dropped.
_MAX_LEADING = 8

# Words whose "." is not a sentence end. Kept short on purpose: "etc." and "no." end
# sentences too often to be listed.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs fig figs approx dept al cf ca ph.d "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# "March 5" / "Mar. 5th" right before a comma, and the year after it: "March 5, 2024".
_MONTH_DAY_END = re.compile(
    r"(?<![A-Za-z])(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.? \d{1,2}(?:st|nd|rd|th)?$"
)
_YEAR_AFTER = re.compile(r" \d{4}(?!\d)")
_YEAR_SO_FAR = re.compile(r" ?\d{0,4}")


@dataclass(frozen=True)
class SegmenterConfig:
    #: the first clause may end at a soft break once it has this many units: at once, so an
    #: opening "Hello," / "Sure," / "你好，" is spoken while the rest of the sentence arrives
    first_min_chars: float = 0.5
    #: later clauses end at soft breaks only once this long
    min_chars: int = 20
    #: hard cap for the first clause, which keeps the time to first audio low
    first_max_chars: int = 30
    #: hard cap for every later clause
    max_chars: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.first_min_chars <= self.first_max_chars <= self.max_chars:
            raise ValueError("need 0 < first_min_chars <= first_max_chars <= max_chars")
        if not 1 <= self.min_chars <= self.max_chars:
            raise ValueError("need 1 <= min_chars <= max_chars")
        if self.first_max_chars < 2:
            raise ValueError("first_max_chars must be at least 2")

    @property
    def buffer_limit(self) -> int:
        """The most characters a segmenter ever holds."""
        return _RAW_PER_UNIT * self.max_chars + _RAW_SLACK + LOOKAHEAD


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF
        or 0x3400 <= o <= 0x4DBF
        or 0x20000 <= o <= 0x3134F
        or 0xF900 <= o <= 0xFAFF
        or 0x3040 <= o <= 0x30FF
        or 0x31F0 <= o <= 0x31FF
        or 0x3100 <= o <= 0x312F
        or 0x1100 <= o <= 0x11FF
        or 0x3130 <= o <= 0x318F
        or 0xAC00 <= o <= 0xD7AF
        or o in (0x3005, 0x3007)
    ) and ch.isalnum()


def _weight(ch: str) -> int:
    """Speaking length in thirds of a unit."""
    if ch.isdigit() or _is_cjk(ch):
        return 3
    return 1 if ch.isalpha() else 0


def units(text: str) -> float:
    """Speaking length of ``text`` in units (see the module docstring)."""
    return sum(_weight(c) for c in text) / 3


def _glued(nxt: str | None) -> bool:
    return nxt is not None and ((nxt.isalnum() and not _is_cjk(nxt)) or nxt in _GLUE)


def _word_before(buf: str, i: int) -> str:
    """The Latin letters and dots right before index i ("U.S.A" in "the U.S.A.")."""
    j = i
    while j > 0 and (buf[j - 1] == "." or (buf[j - 1].isalpha() and not _is_cjk(buf[j - 1]))):
        j -= 1
    return buf[j:i]


def _is_acronym(word: str) -> bool:
    parts = word.split(".")
    return len(parts) > 1 and all(len(p) == 1 and p.isalpha() for p in parts)


def _is_unit_letter(buf: str, i: int) -> bool:
    """The single letter at i is a unit ("5 m", "-5°C"), not an initial."""
    j = i - 1
    if j >= 0 and buf[j] == " ":
        j -= 1
    return j >= 0 and (buf[j].isdigit() or buf[j] == "°")


_WAIT = -1


#: the least a budget lowers a later clause's cap to (units): about one short word
MIN_BUDGET = 2.0


class ClauseSegmenter:
    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()
        #: units the next later clause may have, when the caller must have it short (the audio
        #: already queued for the listener runs out soon: synthesis/pacing.py); None: the config's
        self.budget: float | None = None
        self._first = True
        self._buf = ""
        self._reset_scan()

    @property
    def buffered_chars(self) -> int:
        """Characters held back, waiting for the rest of their clause."""
        return len(self._buf)

    def feed(self, piece: str) -> list[str]:
        return list(self.clauses_in(piece))

    def clauses_in(self, piece: str) -> Iterator[str]:
        """``feed``, one clause at a time: a ``budget`` set while a clause is being spoken
        applies to the next one, however much text has already arrived."""
        out: list[str] = []
        for ch in piece:
            if self._push(ch):
                self._scan(final=False, out=out)
                while out:
                    yield out.pop(0)

    def flush(self) -> list[str]:
        """End of text: return the rest and start over, ready for a new text."""
        out: list[str] = []
        self._scan(final=True, out=out)
        if self._speech:
            self._emit(self._buf, out)
        self._buf = ""
        self._first = True
        self._reset_scan()
        return out

    # -- input ---------------------------------------------------------------

    def _push(self, ch: str) -> bool:
        """Append one character; whitespace is collapsed so it cannot fill the buffer."""
        if ch.isspace():
            ch = "\n" if ch in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029" else " "
            if not self._buf:
                return False
            last = self._buf[-1]
            if last == "\n" or (last == " " and ch == " "):
                return False
            if last == " ":  # a held-back space becomes the newline
                self._buf = self._buf[:-1] + "\n"
                return True
        self._buf += ch
        return True

    # -- scanning --------------------------------------------------------------

    def _reset_scan(self) -> None:
        self._pos = 0  # next character of _buf to look at
        self._units = 0  # thirds of a unit in _buf[:_pos]
        self._speech = False  # _buf[:_pos] has a letter or digit
        self._soft: int | None = None  # end of the last unused soft break
        self._soft_units = 0
        self._space: int | None = None  # index of the last space after speech
        self._edge: int | None = None  # last CJK character edge after speech
        self._weak: int | None = None  # last symbol/word edge, as in "10:30|$3.50"

    def _scan(self, final: bool, out: list[str]) -> None:
        while self._pos < len(self._buf):
            i = self._pos
            buf = self._buf
            c = buf[i]
            if c == " " and i == len(buf) - 1 and not final:
                return  # might still turn into a newline
            cap = self._cap_thirds()
            w = _weight(c)
            if self._units + w > cap or i >= _RAW_PER_UNIT * cap // 3 + _RAW_SLACK:
                self._cap_cut(i, cap, out)
                continue
            if c == "\n":
                self._cut(i, i + 1, out)
                continue
            if c in _BREAKS and self._speech:
                end = self._break_end(i, final)
                if end == _WAIT:
                    return
                if end is not None:
                    self._cut(end, end, out)
                    continue
            self._advance(i, c, w)

    def _edge_before(self, i: int) -> int | None:
        """A cut point at the edge of a CJK character right before index i, if there is one."""
        buf = self._buf
        c = buf[i]
        if not (self._speech and c.isalnum()):
            return None
        if _is_cjk(c):
            while buf[i - 1] in _OPENERS:  # speech precedes, so this stops before index 0
                i -= 1
            return i
        return i if _is_cjk(buf[i - 1]) else None

    def _weak_before(self, i: int) -> int | None:
        """A last-resort cut point before the word at i, when glued on by a symbol."""
        buf = self._buf
        if not self._speech or buf[i - 1].isalnum() or buf[i - 1] in ".,:'’-_@/\\":
            return None
        # back over "(" or "$": speech precedes, so this stops before index 0
        while buf[i - 1] in _OPENERS or unicodedata.category(buf[i - 1]) == "Sc":
            i -= 1
        return i

    def _advance(self, i: int, c: str, w: int) -> None:
        if c.isalnum():
            if not self._speech:
                if i > _MAX_LEADING:  # the first word: drop a long run of marks before it
                    self._buf = self._buf[i - _MAX_LEADING :]
                    i = _MAX_LEADING
            else:
                edge = self._edge_before(i)
                if edge is not None:
                    self._edge = edge
                weak = self._weak_before(i)
                if weak is not None:
                    self._weak = weak
            self._speech = True
        elif c == " " and self._speech:
            self._space = i
        self._units += w
        self._pos = i + 1

    def _break_end(self, i: int, final: bool) -> int | None:
        """Where the clause ends if the break at i is taken; None if not; _WAIT if unknown."""
        buf = self._buf
        n = len(buf)
        j = i + 1
        while j < n and j - i <= _MAX_TRAIL and buf[j] in _TRAILING:
            j += 1
        if j >= n and not final:
            return _WAIT
        nxt = buf[j] if j < n else None
        c = buf[i]
        run = buf[i:j]
        if c == ".":
            if j > i + 1 and buf[i + 1] == ".":  # ellipsis
                if nxt is not None and nxt.isdigit():  # "1...10"
                    return None
                return j
            if _glued(nxt) or not self._sentence_dot(i):
                return None
            return j
        if c in _HARD_ASCII or c in _SOFT_ASCII:
            if _glued(nxt):
                return None
        if c in "：︰" and i > 0 and buf[i - 1].isdigit() and nxt is not None and nxt.isdigit():
            return None  # "3：30"
        if c == "," and _MONTH_DAY_END.search(buf[max(0, i - 16) : i]):
            rest = buf[i + 1 : i + 7]
            if len(rest) < 6 and not final and _YEAR_SO_FAR.fullmatch(rest):
                return _WAIT  # "March 5, 20" may become a date
            if _YEAR_AFTER.match(rest):
                return None
        if any(ch in _HARD or ch in _HARD_ASCII for ch in run):
            return j
        need = self.config.first_min_chars if self._first else self.config.min_chars
        if self._units >= 3 * need or 4 * self._units >= 3 * self._cap_thirds():
            return j
        self._soft = j
        self._soft_units = self._units
        return None

    def _sentence_dot(self, i: int) -> bool:
        buf = self._buf
        word = _word_before(buf, i)
        if len(word) == 1 and not _is_unit_letter(buf, i - 1):
            return False  # an initial: "J. K. Rowling"
        if _is_acronym(word) or word.lower() in _ABBREVIATIONS:
            return False
        head = buf[:i].strip()
        return not (head.isdigit() and len(head) <= 3)  # "1. " starting a list item

    def _cap_thirds(self) -> int:
        """The current clause's cap, in thirds of a unit."""
        if self._first:
            return 3 * self.config.first_max_chars
        cap = self.config.max_chars
        if self.budget is not None:
            cap = min(cap, max(MIN_BUDGET, self.budget))
        return round(3 * cap)

    # -- cutting ---------------------------------------------------------------

    def _cap_cut(self, i: int, cap: int, out: list[str]) -> None:
        if not self._speech:  # a long run of symbols: nothing to say
            self._buf = self._buf[i:]
            self._reset_scan()
            return
        if self._soft is not None and 3 * self._soft_units >= cap:
            self._cut(self._soft, self._soft, out)
            return
        word_starts_here = self._buf[i].isalnum()  # then i itself may be a cut point
        space = -1 if self._space is None else self._space
        edge = self._edge_before(i) if word_starts_here else None
        if edge is None:
            edge = -1 if self._edge is None else self._edge
        weak = self._weak_before(i) if word_starts_here else None
        if weak is None:
            weak = self._weak
        if space > edge:
            self._cut(space, space + 1, out)
        elif edge > 0:
            self._cut(edge, edge, out)
        elif self._soft is not None:
            self._cut(self._soft, self._soft, out)
        elif weak is not None:
            self._cut(weak, weak, out)
        else:
            self._cut(i, i, out)  # one giant token: cut it anyway

    def _cut(self, end: int, rest: int, out: list[str]) -> None:
        clause = self._buf[:end]
        self._buf = self._buf[rest:].lstrip()
        self._reset_scan()
        self._emit(clause, out)

    def _emit(self, clause: str, out: list[str]) -> None:
        text = " ".join(clean_text(clause).split()).lstrip(_LEADING_JUNK)
        if any(ch.isalnum() for ch in text):
            out.append(text)
            self._first = False
