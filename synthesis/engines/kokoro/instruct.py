"""Parse free-text ``instruct_text`` ("speak slowly", "开心一点") into speed/pitch/volume factors.

Only a small, fixed vocabulary is understood; everything else is reported in
``ignored`` so the caller can log it. Factors multiply, then are clamped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SPEED_RANGE = (0.5, 2.0)
PITCH_RANGE = (0.75, 1.33)
VOLUME_RANGE = (0.25, 2.0)


@dataclass(frozen=True)
class InstructParams:
    speed: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0
    ignored: tuple[str, ...] = ()


# (pattern, {attribute: factor}). English patterns match whole words, Chinese ones as
# substrings; when matches overlap the longest wins ("高兴" is happy, not "高" = higher).
_EN_RULES: list[tuple[str, dict[str, float]]] = [
    (r"not (?:too|so) fast", {"speed": 0.9}),
    (r"not (?:too|so) slow(?:ly)?", {"speed": 1.1}),
    (r"slow(?:ly|er)?|slow down", {"speed": 0.8}),
    (r"fast(?:er)?|quick(?:ly|er)?|speed up|hurry", {"speed": 1.25}),
    (r"(?:lower|turn down) (?:the |your )?(?:volume|voice)", {"volume": 0.6}),
    (r"(?:raise|turn up) (?:the |your )?volume|speak up", {"volume": 1.5}),
    (r"(?:higher|high|high-pitched|raise (?:the |your )?pitch)", {"pitch": 1.12}),
    (r"(?:lower|low|deep(?:er)?|lower (?:the |your )?pitch)", {"pitch": 0.89}),
    (r"loud(?:ly|er)?", {"volume": 1.5}),
    (r"quiet(?:ly|er)?|soft(?:ly|er)?", {"volume": 0.6}),
    (r"whisper(?:ing|ed)?", {"volume": 0.4}),
    (r"happy|happily|cheerful(?:ly)?|excited(?:ly)?|joyful(?:ly)?", {"speed": 1.08, "pitch": 1.06}),
    (r"sad(?:ly)?|sorrowful(?:ly)?|melancholy", {"speed": 0.9, "pitch": 0.95}),
    (r"calm(?:ly)?|relaxed|soothing", {"speed": 0.93}),
]
_ZH_RULES: list[tuple[str, dict[str, float]]] = [
    ("不要太快|别太快|不要那么快", {"speed": 0.9}),
    ("不要太慢|别太慢|不要那么慢", {"speed": 1.1}),
    ("语速慢|慢速|放慢|降低语速|慢", {"speed": 0.8}),
    ("语速快|快速|加快|提高语速|快", {"speed": 1.25}),
    ("提高音量|音量大|大声|响亮", {"volume": 1.5}),
    ("降低音量|音量小|小声|轻声|轻柔", {"volume": 0.6}),
    ("耳语|悄悄", {"volume": 0.4}),
    ("提高音调|音调高|高音|尖|高", {"pitch": 1.12}),
    ("降低音调|音调低|低沉|低音|低", {"pitch": 0.89}),
    ("欢快|开心|高兴|快乐|兴奋|愉快", {"speed": 1.08, "pitch": 1.06}),
    ("悲伤|难过|伤心|忧伤", {"speed": 0.9, "pitch": 0.95}),
    ("平静|冷静|沉稳|舒缓", {"speed": 0.93}),
]
_WEAK = re.compile(r"\b(?:a (?:little )?bit|a little|slightly|somewhat|a touch)\b|稍微|稍|一点|一些|有点|略")
_STRONG = re.compile(r"\b(?:very|much|really|extremely|super)\b|非常|很|特别|超级|极")

_NUMBER = r"(\d+(?:\.\d+)?)\s*(%|x|×|倍)?"
_NUMERIC: list[tuple[str, str]] = [
    ("speed", rf"{_NUMBER}\s*(?:speed|倍速)|(?:speed|rate|pace|tempo|语速|速度)\s*[:：=]?\s*{_NUMBER}"),
    ("pitch", rf"(?:pitch|音调|音高)\s*[:：=]?\s*{_NUMBER}|{_NUMBER}\s*pitch"),
    ("volume", rf"(?:volume|gain|音量)\s*[:：=]?\s*{_NUMBER}|{_NUMBER}\s*volume"),
]
_RANGES = {"speed": SPEED_RANGE, "pitch": PITCH_RANGE, "volume": VOLUME_RANGE}
_SPLIT = re.compile(r"[,;!?，。；！？、\n]+|\.(?!\d)|\b(?:and|but|then|with)\b|并且|而且|同时|然后")


def _compile() -> list[tuple[re.Pattern[str], dict[str, float]]]:
    rules = [(re.compile(rf"\b(?:{p})\b", re.I), f) for p, f in _EN_RULES]
    rules += [(re.compile(p), f) for p, f in _ZH_RULES]
    return rules


_RULES = _compile()
_NUMERIC_RE = [(attr, re.compile(p, re.I)) for attr, p in _NUMERIC]


def _number(groups: tuple[str | None, ...]) -> float | None:
    for i in range(0, len(groups), 2):
        if groups[i] is not None:
            value = float(groups[i])
            return value / 100.0 if groups[i + 1] == "%" else value
    return None


def _parse_phrase(phrase: str, factors: dict[str, float]) -> bool:
    """Apply what ``phrase`` asks for to ``factors``; False when nothing was understood."""
    understood = False
    taken = [False] * len(phrase)
    for attr, pattern in _NUMERIC_RE:
        for m in pattern.finditer(phrase):
            value = _number(m.groups())
            if value is None or value <= 0 or any(taken[m.start() : m.end()]):
                continue
            factors[attr] *= value
            taken[m.start() : m.end()] = [True] * (m.end() - m.start())
            understood = True
    matches = [(m.start(), m.end(), f) for pattern, f in _RULES for m in pattern.finditer(phrase)]
    matches.sort(key=lambda t: -(t[1] - t[0]))
    exponent = 0.5 if _WEAK.search(phrase) else 1.8 if _STRONG.search(phrase) else 1.0
    for start, end, f in matches:
        if any(taken[start:end]):
            continue
        taken[start:end] = [True] * (end - start)
        for attr, factor in f.items():
            factors[attr] *= factor**exponent
        understood = True
    return understood


def parse_instruct(text: str | None) -> InstructParams:
    if not text or not text.strip():
        return InstructParams()
    factors = {"speed": 1.0, "pitch": 1.0, "volume": 1.0}
    ignored = []
    for phrase in _SPLIT.split(text):
        phrase = phrase.strip()
        if phrase and not _parse_phrase(phrase, factors):
            ignored.append(phrase)
    clamped = {k: round(min(max(v, _RANGES[k][0]), _RANGES[k][1]), 3) for k, v in factors.items()}
    return InstructParams(**clamped, ignored=tuple(ignored))
