from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from synthesis.text.segmenter import ClauseSegmenter, SegmenterConfig, units

# Small thresholds make the length rules visible in short examples.
TINY = SegmenterConfig(first_min_chars=2, min_chars=4, first_max_chars=8, max_chars=12)


def segment(text: str, config: SegmenterConfig | None = None) -> list[str]:
    seg = ClauseSegmenter(config)
    return seg.feed(text) + seg.flush()


def segment_in_pieces(pieces: list[str], config: SegmenterConfig | None = None) -> list[str]:
    seg = ClauseSegmenter(config)
    out: list[str] = []
    for piece in pieces:
        out += seg.feed(piece)
    return out + seg.flush()


def random_cuts(text: str, rng: random.Random, most: int = 7) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        n = rng.randint(1, most)
        pieces.append(text[i : i + n])
        i += n
    return pieces


HARD_BREAKS = [
    ("今天天气很好。我们去公园吧！你去吗？", ["今天天气很好。", "我们去公园吧！", "你去吗？"]),
    ("第一；第二", ["第一；", "第二"]),
    ("等一下…好的", ["等一下…", "好的"]),
    ("等一下……好的", ["等一下……", "好的"]),
    ("Hello there! How are you? Fine; thanks", ["Hello there!", "How are you?", "Fine;", "thanks"]),
    ("first line\nsecond line\r\nthird", ["first line", "second line", "third"]),
    ("标题\n正文", ["标题", "正文"]),
    ("Wait... what?! Really?", ["Wait...", "what?!", "Really?"]),
    ("真的吗？！太好了", ["真的吗？！", "太好了"]),
    ("It ends here.", ["It ends here."]),
    ("没有标点", ["没有标点"]),
]

DOTS = [
    ("圆周率是3.14。", ["圆周率是3.14。"]),
    ("Pi is 3.14 roughly. Yes", ["Pi is 3.14 roughly.", "Yes"]),
    ("Mr. Smith met Mrs. Jones. They", ["Mr. Smith met Mrs. Jones.", "They"]),
    ("Ask Dr. Who, e.g. the doctor. Done", ["Ask Dr. Who, e.g. the doctor.", "Done"]),
    ("i.e. this one. Done", ["i.e. this one.", "Done"]),
    ("The U.S.A. is big. Yes", ["The U.S.A. is big.", "Yes"]),
    ("J. K. Rowling wrote it. Yes", ["J. K. Rowling wrote it.", "Yes"]),
    ("Visit example.com today. Yes", ["Visit example.com today.", "Yes"]),
    ("Visit example.com. Yes", ["Visit example.com.", "Yes"]),
    ("Mail a.b@example.com now. Yes", ["Mail a.b@example.com now.", "Yes"]),
    ("See https://example.com/a.b?q=1 now. Yes", ["See https://example.com/a.b?q=1 now.", "Yes"]),
    ("Version v1.2.3 is out. Yes", ["Version v1.2.3 is out.", "Yes"]),
    ("Count 1...10 now. Yes", ["Count 1...10 now.", "Yes"]),
    ("It costs $3.50. Cheap", ["It costs $3.50.", "Cheap"]),
    ("好的.下一句", ["好的.", "下一句"]),
    ("1. First item\n2. Second item", ["1. First item", "2. Second item"]),
    ('He said "Stop." Then left', ['He said "Stop."', "Then left"]),
    ("Time is 10:30 now. Yes", ["Time is 10:30 now.", "Yes"]),
    ("We sold 1,000 units. Yes", ["We sold 1,000 units.", "Yes"]),
    ("Use Node.js here. Yes", ["Use Node.js here.", "Yes"]),
]

SOFT_BREAKS = [
    # first clause: a comma counts once the clause has first_min_chars (2) units
    ("好，今天天气很好，我们去公园吧。", ["好，今天天气很好，", "我们去公园吧。"]),
    ("你好，今天天，我们去公园吧，好吗", ["你好，", "今天天，我们去公园吧，", "好吗"]),
    ("一二三、四五六：七八九——十一", ["一二三、", "四五六：七八九——", "十一"]),
    ("Well, ok. Then we go, and go", ["Well, ok.", "Then we go, and go"]),
    ("Note: this one. Yes", ["Note: this one.", "Yes"]),
    ("一二三,四五六七八九,十一", ["一二三,", "四五六七八九,", "十一"]),
]

# The defaults: an opening word before a comma is a clause of its own (a voice agent's
# greeting is heard at once); later clauses end at soft breaks once they have min_chars (20).
DEFAULT_SOFT = [
    ("好，很好，今天天气很好，我们一起去公园散步吧，顺便买点东西，然后回家做饭，晚上一起看电影。",
     ["好，", "很好，今天天气很好，我们一起去公园散步吧，顺便买点东西，", "然后回家做饭，晚上一起看电影。"]),
    ("Sure, here is the answer you asked for, with details.",
     ["Sure,", "here is the answer you asked for, with details."]),
    ("Hello, thanks for calling the city library. Our hours", ["Hello,", "thanks for calling the city library.",
                                                              "Our hours"]),
    ("Hi, there", ["Hi,", "there"]),
    ("你好，欢迎致电市图书馆。", ["你好，", "欢迎致电市图书馆。"]),
]

CLOSERS = [
    ("他说“你好！”然后走了。", ["他说“你好！”", "然后走了。"]),
    ("「好的。」他说。", ["「好的。」", "他说。"]),
    ("（真的？）是的", ["（真的？）", "是的"]),
    ('"Why?!" he asked. Ok', ['"Why?!"', "he asked.", "Ok"]),
    ("书名《好书。》读完", ["书名《好书。》", "读完"]),
    ("好！！！真的", ["好！！！", "真的"]),
    ("**重要。**然后", ["重要。", "然后"]),
]

NOT_EMITTED = [
    ("。。。", []),
    ("   \n\n  ", []),
    ("……好的。", ["好的。"]),
    ("😀😀。好的", ["好的"]),
    ("好的。😀😀", ["好的。"]),
    ("好的。\n\n\n——\n再见", ["好的。", "再见"]),
    ("```python\n代码\n```", ["代码"]),
    ("", []),
]

MIXED = [
    ("我今天用了ChatGPT写code，效果不错。It works well, 真的!",
     ["我今天用了ChatGPT写code，", "效果不错。", "It works well, 真的!"]),
    ("用Python 3.11跑了e.g.这个测试。OK", ["用Python 3.11跑了e.g.这个测试。", "OK"]),
]


@pytest.mark.parametrize(("text", "expected"), HARD_BREAKS)
def test_hard_breaks(text: str, expected: list[str]) -> None:
    assert segment(text, TINY) == expected


@pytest.mark.parametrize(("text", "expected"), DOTS)
def test_dots(text: str, expected: list[str]) -> None:
    big = SegmenterConfig(first_min_chars=50, min_chars=50, first_max_chars=90, max_chars=90)
    assert segment(text, big) == expected


@pytest.mark.parametrize(("text", "expected"), SOFT_BREAKS)
def test_soft_breaks(text: str, expected: list[str]) -> None:
    assert segment(text, TINY) == expected


@pytest.mark.parametrize(("text", "expected"), DEFAULT_SOFT)
def test_soft_breaks_with_defaults(text: str, expected: list[str]) -> None:
    assert segment(text) == expected


def test_a_budget_shortens_later_clauses_only() -> None:
    text = "Hello, thanks for calling the city library. Our opening hours today are from nine until eight."
    seg = ClauseSegmenter()
    seg.budget = 9.0  # units: about six short words
    clauses = seg.feed(text) + seg.flush()
    assert clauses[0] == "Hello,"
    assert all(units(c) <= 9.0 for c in clauses[1:])
    assert " ".join(clauses) == text  # cut between words, nothing lost


def test_a_budget_still_prefers_a_soft_break() -> None:
    seg = ClauseSegmenter()
    assert seg.feed("Sure, o") == ["Sure,"]
    seg.budget = 7.0
    clauses = seg.feed("f course, I will look it up for you right now and call you back. ") + seg.flush()
    assert clauses[0] == "of course,"  # at the comma, not at the cap after "look"
    assert all(units(c) <= 7.0 for c in clauses)
    assert " ".join(clauses) == "of course, I will look it up for you right now and call you back."


def test_a_tiny_budget_still_speaks_a_few_words_at_a_time() -> None:
    seg = ClauseSegmenter()
    assert seg.feed("你好，欢") == ["你好，"]
    seg.budget = 0.0
    assert seg.feed("迎致电市图书馆。") + seg.flush() == ["欢迎", "致电", "市图", "书馆。"]  # MIN_BUDGET: 2 units


def test_without_a_budget_the_config_rules() -> None:
    text = "Sure, " + "word " * 100
    seg = ClauseSegmenter()
    seg.budget = None
    clauses = seg.feed(text) + seg.flush()
    assert max(units(c) for c in clauses) > 90  # up to max_chars (100)


@pytest.mark.parametrize(("text", "expected"), CLOSERS)
def test_closers_stay_with_their_clause(text: str, expected: list[str]) -> None:
    assert segment(text, TINY) == expected


@pytest.mark.parametrize(("text", "expected"), NOT_EMITTED)
def test_clauses_without_speech_are_not_emitted(text: str, expected: list[str]) -> None:
    assert segment(text, TINY) == expected


@pytest.mark.parametrize(("text", "expected"), MIXED)
def test_mixed_text(text: str, expected: list[str]) -> None:
    assert segment(text) == expected


HARD_CAP = [
    # cut at the last space, never inside a word
    ("alpha beta gamma delta epsilon", ["alpha beta gamma delta", "epsilon"]),
    # cut at a CJK edge, never inside "ChatGPT" or "3.14159"
    ("一二三四五六ChatGPT七八九十3.14159一二三四五", ["一二三四五六", "ChatGPT七八九十", "3.14159一二三四五"]),
    # a soft break that was too early to use is preferred to a space
    ("一二三，四五 六七八九十", ["一二三，", "四五 六七八九十"]),
    # without one, the latest edge wins
    ("一二，三四 五六七八九十", ["一二，三四 五六七八", "九十"]),
    # one giant token is cut anyway
    ("a" * 30, ["a" * 24, "a" * 6]),
]


@pytest.mark.parametrize(("text", "expected"), HARD_CAP)
def test_hard_cap(text: str, expected: list[str]) -> None:
    config = SegmenterConfig(first_min_chars=8, min_chars=12, first_max_chars=8, max_chars=12)
    assert segment(text, config) == expected


def test_units() -> None:
    assert units("今天") == 2
    assert units("2024") == 4
    assert units("abc") == 1
    assert units("Hello, world!") == pytest.approx(10 / 3)
    assert units("，。 !?😀") == 0


@pytest.mark.parametrize(
    ("pieces", "early"),
    [
        (["圆周率是3.", "14。", "对"], [[], [], ["圆周率是3.14。"]]),
        (["Mr.", " Smith.", " Hi"], [[], [], ["Mr. Smith."]]),
        (["see e.", "g.", " this. ", "x"], [[], [], ["see e.g. this."], []]),
        (["We sold 1,", "000 units."], [[], []]),
        (["Hello.", " "], [[], ["Hello."]]),
        (["你好。", "」", "好"], [[], [], ["你好。」"]]),
        (["你好\n", "再见"], [["你好"], []]),
    ],
)
def test_ambiguous_end_is_held_back(pieces: list[str], early: list[list[str]]) -> None:
    seg = ClauseSegmenter(SegmenterConfig(first_min_chars=50, min_chars=50, first_max_chars=90, max_chars=90))
    assert [seg.feed(piece) for piece in pieces] == early


VOCABULARY = [
    "今天", "天气", "很好", "我们", "的", "模型", "声音", "ChatGPT", "code", "hello", "world",
    "It", "works", "well", "Python", "3.14", "1,000", "10:30", "2024", "e.g.", "Mr.", "Dr.",
    "U.S.A.", "example.com", "a.b@example.com", "$3.50", "20%", "25°C", "v1.2.3",
    "，", "。", "！", "？", "、", "：", "；", "…", "……", ", ", ". ", "! ", "? ", "...", ": ",
    "\n", " ", "  ", "“", "”", "「", "」", "（", "）", "(", ")", "😀", "—", '"', "'",
]
TOKEN = re.compile(r"[A-Za-z0-9]+(?:[.,:@][A-Za-z0-9]+)*")


def random_text(rng: random.Random) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(1, 120)):
        word = rng.choice(VOCABULARY)
        last = parts[-1][-1] if parts else " "
        if last.isascii() and not last.isspace() and word[0].isascii() and word[0].isalnum():
            parts.append(" ")  # keep Latin tokens apart, as real text does
        parts.append(word)
    return "".join(parts)


CONFIGS = [SegmenterConfig(), TINY, SegmenterConfig(first_min_chars=1, min_chars=1, first_max_chars=5, max_chars=6)]


@pytest.mark.parametrize("config", CONFIGS)
def test_same_clauses_whatever_the_pieces(config: SegmenterConfig) -> None:
    for seed in range(150):
        rng = random.Random(seed)
        text = random_text(rng)
        whole = segment(text, config)
        assert segment_in_pieces(list(text), config) == whole, text
        assert segment_in_pieces(random_cuts(text, rng), config) == whole, text
        assert segment_in_pieces(random_cuts(text, rng, 40), config) == whole, text


def _subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(ch in it for ch in small)


@pytest.mark.parametrize("config", CONFIGS)
def test_no_text_lost_and_no_word_cut(config: SegmenterConfig) -> None:
    for seed in range(150):
        text = random_text(random.Random(1000 + seed))
        clauses = segment(text, config)
        speakable = "".join(ch for ch in text if ch.isalnum())
        assert "".join(ch for ch in "".join(clauses) if ch.isalnum()) == speakable, text
        assert _subsequence("".join("".join(clauses).split()), "".join(text.split())), text
        assert all(any(ch.isalnum() for ch in clause) for clause in clauses)
        assert all(clause == clause.strip() and "\n" not in clause for clause in clauses)
        tokens_out = Counter(tok for clause in clauses for tok in TOKEN.findall(clause))
        assert tokens_out == Counter(TOKEN.findall(text.replace("😀", " "))), text
        caps = [config.first_max_chars] + [config.max_chars] * len(clauses)
        assert all(units(clause) <= cap for clause, cap in zip(clauses, caps)), clauses


ADVERSARIAL = {
    "one long word": "a" * 5000,
    "no punctuation": "好" * 5000,
    "one long number": "1" * 5000,
    "only emoji": "😀" * 5000,
    "only dots": "." * 5000,
    "endless ellipsis": "好" + "." * 5000,
    "endless closers": "好。" + "」" * 5000,
    "only spaces": " " * 5000 + "好",
    "only newlines": "\n" * 5000,
    "only dashes": "-" * 5000,
    "endless commas": "好" + "，" * 5000,
    "words": "word " * 2000,
    "short comma clauses": "ab, " * 2000,
    "spaced CJK": "好 " * 3000,
    "combining marks": "x" + "\u0301" * 5000,
    "glued symbols": "10:30$3.50" * 500,
}


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_buffer_stays_bounded(text: str) -> None:
    for config in (SegmenterConfig(), TINY):
        seg = ClauseSegmenter(config)
        clauses: list[str] = []
        for piece in random_cuts(text, random.Random(7), 50):
            clauses += seg.feed(piece)
            assert seg.buffered_chars <= config.buffer_limit
        clauses += seg.flush()
        assert seg.buffered_chars == 0
        speakable = "".join(ch for ch in text if ch.isalnum())
        assert "".join(ch for ch in "".join(clauses) if ch.isalnum()) == speakable


def test_first_clause_is_short_and_later_ones_longer() -> None:
    text = "，".join(["今天天气很好"] * 12) + "。"
    clauses = segment(text)
    assert units(clauses[0]) <= SegmenterConfig().first_max_chars
    assert all(units(c) >= SegmenterConfig().min_chars for c in clauses[1:-1])


def test_flush_starts_a_new_text() -> None:
    seg = ClauseSegmenter(TINY)
    assert seg.feed("你好，今天") == ["你好，"]
    assert seg.flush() == ["今天"]
    assert seg.feed("你好，今天") == ["你好，"]  # first-clause rules apply again


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_min_chars": 0},
        {"first_min_chars": 40, "first_max_chars": 30},
        {"first_max_chars": 200, "max_chars": 100},
        {"min_chars": 200, "max_chars": 100},
        {"first_min_chars": 1, "first_max_chars": 1},
    ],
)
def test_config_is_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        SegmenterConfig(**kwargs)
