"""Spell out numbers, dates, times, money, percentages, units and phone numbers.

``normalize_zh`` and ``normalize_en`` are pure, regex-based and run on one language run
of the G2P (synthesis/engines/kokoro/g2p.py), right before it is phonemized; their output has no
digits left, so neither espeak-ng nor misaki's cn2an guesses at them. The G2P keeps a
whole numeric expression (``NUMBER_TOKEN``) in one run, so its language is decided once.

Rules are applied in this order; each rewrites digits to words, so a later rule never
sees what an earlier one has read:

0. "~5" is "about five" / 约五; "US$5", "HK$5" are "USD 5", "HKD 5".
1. phone numbers ("138-1234-5678", "13812345678", "+86 138 1234 5678",
   "(555) 123-4567", "555-123-4567", "010-12345678"): digit by digit in groups,
   Chinese reads 1 as 幺.
2. dates: "2024-03-05", "2024/3/5", "2024.3.5"; Chinese "2024年" (a 4-digit year is read
   digit by digit: 二零二四年, but "2000年前" is 两千年前); English "3/5/2024" (US order;
   "13/12/2024" can only be day first), "March 5, 2024", "5 Mar 2024", "March 2024"
   (years as "twenty twenty four", "nineteen oh five", "two thousand five").
3. clock times "10:30", "10:05", "10:30:15", "9:05 pm", "9am" (十点三十分, 十点零五分;
   "ten thirty", "ten oh five", "nine PM"); other "2:1" are ratios (二比一, "two to one").
4. money: "$3.50", "€5", "£3.20", "¥35.5", "USD 10", "10 USD", "RMB 100", "$1.5M".
5. percentages "50%", "3.5%", "50-60%" (百分之五十, "fifty percent").
6. units after a number or range (km, m, cm, mm, kg, g, mg, L, ml, km/h, m/s, mph,
   °C, °F, °, GB, MB, KB, TB, GHz, MHz, kHz, Hz, ms, s, min, h): English words, plural
   unless the value is 1; Chinese 公里, 千克, 摄氏度... (data sizes stay "GB", as Chinese
   speakers say them).
7. ranges "3-5", "3~5", "3–5" ("three to five", 三到五).
8. proper fractions "3/4" ("three quarters", 四分之三); English only for denominators up
   to 10, so "9/11" or "24/7" are not read as fractions.
9. ordinals "1st", "22nd" ("first", "twenty second"; 第一).
10. English decades ("1990s", "'80s", "100s") and years after "in", "since", "until",
    "by", "from ... to"...; IPv4 addresses digit by digit ("one nine two dot ...").
11. every other number: integers with or without thousands separators, decimals,
    negatives, version strings, "10k"/"7B"; a leading zero ("007") means digit by digit.
    Chinese uses 两 for a leading 2 of 千/万/亿 and for a bare 2 before a measure word
    (两个, 两点, 两公里), never after 第.

English numbers are written with spaces ("twenty four"), the way espeak-ng spells them
itself; a bare 4-digit number from 1100 to 1999 keeps espeak's "nineteen hundred
ninety nine", which works for years and for counts.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import cn2an

# ---------------------------------------------------------------------------
# Shared patterns

_INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"  # "1,234,567" or "1234567"
_NUM = rf"{_INT}(?:\.\d+)?"
_SIGN = r"(?:(?<![A-Za-z0-9])[-−])"  # a minus sign, not a hyphen inside "COVID-19"
_SNUM = rf"{_SIGN}?{_NUM}"
_RANGE_SEP = r"(?:-|\s?[~～〜–—]\s?)"
_NOT_AFTER = r"(?<![0-9A-Za-z.,])"  # no digit, letter, "." or "," right before
_NOT_BEFORE = r"(?![0-9]|[.,]\d)"
_AMPM = r"(?P<ap>[AaPp]\.?[Mm]\.?)(?![A-Za-z])"
_CODES = {
    # code: (English singular, plural, subunit singular, plural), Chinese name
    "USD": (("US dollar", "US dollars", "cent", "cents"), "美元"),
    "EUR": (("euro", "euros", "cent", "cents"), "欧元"),
    "GBP": (("pound", "pounds", "penny", "pence"), "英镑"),
    "RMB": (("yuan", "yuan", None, None), "元"),
    "CNY": (("yuan", "yuan", None, None), "元"),
    "JPY": (("yen", "yen", None, None), "日元"),
    "HKD": (("Hong Kong dollar", "Hong Kong dollars", "cent", "cents"), "港元"),
}
_SYMBOLS = {
    "$": (("dollar", "dollars", "cent", "cents"), "美元"),
    "€": (("euro", "euros", "cent", "cents"), "欧元"),
    "£": (("pound", "pounds", "penny", "pence"), "英镑"),
    "¥": (("yuan", "yuan", None, None), "元"),
    "￥": (("yuan", "yuan", None, None), "元"),  # full-width, as Chinese text writes it
}
_CODE_RE = "|".join(_CODES)
_SCALE_WORDS = {3: "thousand", 6: "million", 9: "billion", 12: "trillion"}
# "$5M", "10k", "$1.5 billion": the power of ten of each scale
_SCALES = {"k": 3, "K": 3, "thousand": 3, "M": 6, "m": 6, "million": 6, "B": 9, "bn": 9, "billion": 9, "trillion": 12}
_SCALE_RE = r"(?P<scale>thousand|million|billion|trillion|bn|[kKmMB])(?![A-Za-z])"

# unit: (English singular, plural, Chinese)
_UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour", "公里每小时"),
    "m/s": ("meter per second", "meters per second", "米每秒"),
    "mph": ("mile per hour", "miles per hour", "英里每小时"),
    "km": ("kilometer", "kilometers", "公里"),
    "cm": ("centimeter", "centimeters", "厘米"),
    "mm": ("millimeter", "millimeters", "毫米"),
    "m": ("meter", "meters", "米"),
    "kg": ("kilogram", "kilograms", "千克"),
    "mg": ("milligram", "milligrams", "毫克"),
    "g": ("gram", "grams", "克"),
    "ml": ("milliliter", "milliliters", "毫升"),
    "mL": ("milliliter", "milliliters", "毫升"),
    "L": ("liter", "liters", "升"),
    "°C": ("degree Celsius", "degrees Celsius", "摄氏度"),
    "℃": ("degree Celsius", "degrees Celsius", "摄氏度"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit", "华氏度"),
    "℉": ("degree Fahrenheit", "degrees Fahrenheit", "华氏度"),
    "°": ("degree", "degrees", "度"),
    "TB": ("terabyte", "terabytes", "TB"),
    "GB": ("gigabyte", "gigabytes", "GB"),
    "MB": ("megabyte", "megabytes", "MB"),
    "KB": ("kilobyte", "kilobytes", "KB"),
    "kB": ("kilobyte", "kilobytes", "KB"),
    "GHz": ("gigahertz", "gigahertz", "吉赫兹"),
    "MHz": ("megahertz", "megahertz", "兆赫兹"),
    "kHz": ("kilohertz", "kilohertz", "千赫兹"),
    "Hz": ("hertz", "hertz", "赫兹"),
    "ms": ("millisecond", "milliseconds", "毫秒"),
    "s": ("second", "seconds", "秒"),
    "sec": ("second", "seconds", "秒"),
    "min": ("minute", "minutes", "分钟"),
    "mins": ("minute", "minutes", "分钟"),
    "h": ("hour", "hours", "小时"),
    "hr": ("hour", "hours", "小时"),
    "hrs": ("hour", "hours", "小时"),
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))

_PHONE = re.compile(
    r"(?<![0-9A-Za-z+])(?:(?P<cc>\+\d{1,3})[\s-]?)?"
    r"(?P<body>\(\d{2,4}\)\s?\d{3,4}[\s-]\d{4}"  # (555) 123-4567, (010) 1234 5678
    r"|1[3-9]\d(?:[\s-]?\d{4}){2}"  # Chinese mobile: 138-1234-5678, 13812345678
    r"|\d{3}(?P<sep>[\s.-])\d{3}(?P=sep)\d{4}"  # 555-123-4567
    r"|0\d{2,3}-\d{7,8})"  # Chinese landline: 010-12345678
    r"(?![0-9A-Za-z]|[-.]\d)"
)
_ISO_DATE = re.compile(
    r"(?<![0-9A-Za-z.,/:-])(?P<y>[12]\d{3})(?P<sep>[-/.])(?P<m>0?[1-9]|1[0-2])(?P=sep)"
    r"(?P<d>0?[1-9]|[12]\d|3[01])(?![0-9]|[-/.:]\d)"
)
_TIME = re.compile(
    r"(?<![0-9:.])(?P<h>[01]?\d|2[0-4]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?(?![0-9]|:\d)"
    rf"(?:\s?{_AMPM})?"
)
_HOUR_AMPM = re.compile(rf"(?<![0-9:.,])(?P<h>1[0-2]|0?\d)\s?{_AMPM}")
_RATIO = re.compile(r"(?<![0-9:.])(\d+):(\d+)(?![0-9]|:\d)")
_MONEY = re.compile(
    rf"(?P<neg>{_SIGN})?(?:(?P<sym>[$€£¥￥])|(?<![A-Za-z])(?P<code>{_CODE_RE})\s?)(?P<num>{_NUM})"
    rf"(?:\s?{_SCALE_RE})?"
)
_MONEY_AFTER = re.compile(rf"{_NOT_AFTER}(?P<num>{_SNUM})\s?(?P<code>{_CODE_RE})(?![A-Za-z])")
_PERCENT = re.compile(rf"{_NOT_AFTER}(?P<a>{_SNUM})(?:%?(?P<sep>{_RANGE_SEP})(?P<b>{_SNUM}))?\s?[%％]")
_QUANTITY = rf"(?P<a>{_SNUM})(?:(?P<sep>{_RANGE_SEP})(?P<b>{_SNUM}))?"
_UNIT = re.compile(rf"{_NOT_AFTER}{_QUANTITY}\s?(?P<u>{_UNIT_RE})(?![A-Za-z0-9])")
_RANGE = re.compile(rf"{_NOT_AFTER}(?P<a>{_SNUM})(?P<sep>{_RANGE_SEP})(?P<b>{_NUM}){_NOT_BEFORE}(?!-)")
_FRACTION = re.compile(r"(?<![0-9/.,])(\d+)/(\d+)(?![0-9]|/\d)")
_ORDINAL = re.compile(rf"(?<![0-9.])(?P<n>{_INT})(?P<suf>st|nd|rd|th)(?![A-Za-z])")
_VERSION = re.compile(r"(?<![0-9.])\d+(?:\.\d+){2,}(?![0-9])")
_NUMBER = re.compile(_SNUM)
_DIGITS = re.compile(r"\d+")

#: A whole numeric expression, so the G2P keeps it in one run: phone numbers, digits
#: joined by . , : / - ~ (dates, times, ranges, decimals), a sign, currency before it,
#: % and a unit, am/pm, ordinal suffix, scale or currency code after it.
NUMBER_TOKEN = (
    r"(?:(?<![0-9A-Za-z+])(?:\+\d{1,3}[\s-]?)?"
    r"(?:\(\d{2,4}\)\s?\d{3,4}[\s-]\d{4}|1[3-9]\d(?:[\s-]?\d{4}){2}|\d{3}[\s.-]\d{3}[\s.-]\d{4}|0\d{2,3}-\d{7,8})"
    r"(?![0-9A-Za-z]|[-.]\d)"
    rf"|{_SIGN}?(?:(?:{_CODE_RE})\s?|(?:US|HK)(?=\$))?[$€£¥￥]?\d+%?(?:(?:[.,:/~～〜–-]|\s[~～〜–]\s)\d+%?)*"
    rf"(?:\s?(?:{_UNIT_RE}|[AaPp]\.?[Mm]\.?|st|nd|rd|th|thousand|million|billion|trillion|bn|[kKMB]|{_CODE_RE}|s)"
    r"(?![A-Za-z]))?)"
)


def _plain(num: str) -> str:
    return num.replace(",", "").replace("−", "-")


# ---------------------------------------------------------------------------
# English

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}
_DENOMINATORS = {
    2: ("half", "halves"), 3: ("third", "thirds"), 4: ("quarter", "quarters"),
}
_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_MONTH_NAMES = {m.lower(): i for i, m in enumerate(_MONTHS, 1)}
_MONTH_NAMES.update({m[:3].lower(): i for i, m in enumerate(_MONTHS, 1)})
_MONTH_NAMES["sept"] = 9
_MONTH_RE = "|".join(sorted((m[0].upper() + m[1:] for m in _MONTH_NAMES), key=len, reverse=True))


def en_int(n: int) -> str:
    """125 -> "one hundred twenty five" (American: no "and")."""
    if n < 0:
        return "minus " + en_int(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + en_int(rest) if rest else "")
    for exp in (12, 9, 6, 3):
        if n >= 10**exp:
            head, rest = divmod(n, 10**exp)
            return en_int(head) + " " + _SCALE_WORDS[exp] + (" " + en_int(rest) if rest else "")
    raise AssertionError(n)


def en_digits(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits if d.isdigit())


def en_number(num: str) -> str:
    """ "1,234.05" -> "one thousand two hundred thirty four point zero five"; "007" digit by digit."""
    num = _plain(num)
    sign = "minus " if num.startswith("-") else ""
    whole, _, frac = num.lstrip("-").partition(".")
    if (len(whole) > 1 and whole.startswith("0")) or len(whole) > 15:
        words = en_digits(whole)
    elif len(whole) == 4 and 1100 <= int(whole) <= 1999 and "," not in num and not frac:
        words = en_year(int(whole), hundreds=True)
    else:
        words = en_int(int(whole or "0"))
    return sign + words + (" point " + en_digits(frac) if frac else "")


def en_ordinal(n: int) -> str:
    words = en_int(n).split(" ")
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def en_year(n: int, hundreds: bool = False) -> str:
    """2024 -> "twenty twenty four", 1905 -> "nineteen oh five", 2005 -> "two thousand five".

    With ``hundreds`` (a bare number, maybe a count), 1999 -> "nineteen hundred ninety nine".
    """
    if not 1000 <= n <= 9999 or n % 1000 < 10:
        return en_int(n)
    head, tail = divmod(n, 100)
    if tail == 0:
        return en_int(head) + " hundred"
    if hundreds:
        return en_int(head) + " hundred " + en_int(tail)
    return en_int(head) + (" oh " if tail < 10 else " ") + en_int(tail)


def _plural_word(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def _en_signed_value(num: str, year: bool = False) -> str:
    if year and re.fullmatch(r"(?:1[1-9]|20)\d\d", num):
        return en_year(int(num))
    return en_number(num)


def _en_phone(m: re.Match[str]) -> str:
    groups = _phone_groups(m.group("body"))
    if m.group("cc"):
        groups.insert(0, "plus " + en_digits(m.group("cc")))
    return ", ".join(g if g.startswith("plus") else en_digits(g) for g in groups)


def _phone_groups(body: str) -> list[str]:
    groups = re.findall(r"\d+", body)
    if len(groups) == 1 and len(groups[0]) == 11:  # 13812345678 -> 138 1234 5678
        g = groups[0]
        groups = [g[:3], g[3:7], g[7:]]
    return groups


def _en_date(month: int, day: int | None, year: int | None, day_first: bool = False) -> str:
    name = _MONTHS[month - 1]
    if day is None:
        out = name
    elif day_first:
        out = f"the {en_ordinal(day)} of {name}"
    else:
        out = f"{name} {en_ordinal(day)}"
    return out + (f", {en_year(year)}" if year is not None else "")


_EN_US_DATE = re.compile(
    r"(?<![0-9A-Za-z.,/:-])(?P<m>0?[1-9]|1[0-2])/(?P<d>0?[1-9]|[12]\d|3[01])/(?P<y>[12]\d{3})(?![0-9]|/\d)"
)
_EN_MONTH_DAY = re.compile(
    rf"(?<![A-Za-z])(?P<mon>{_MONTH_RE})\.?\s+(?P<d>0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?(?![0-9A-Za-z])"
    r"(?:,?\s+(?P<y>[12]\d{3})(?![0-9]))?"
)
_EN_DAY_MONTH = re.compile(
    r"(?<![0-9A-Za-z.,])(?P<d>0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\s+(?:of\s+)?"
    rf"(?P<mon>{_MONTH_RE})\.?(?![A-Za-z])(?:,?\s+(?P<y>[12]\d{{3}})(?![0-9]))?"
)
_EN_MONTH_YEAR = re.compile(rf"(?<![A-Za-z])(?P<mon>{_MONTH_RE})\.?,?\s+(?P<y>[12]\d{{3}})(?![0-9])")
_EN_DECADE = re.compile(r"(?<![0-9A-Za-z])(?P<n>(?:1\d|20)\d0|'?[2-9]0|100)s(?![A-Za-z0-9])")
_EN_YEAR_CUE = re.compile(
    r"(?<![A-Za-z])(?P<cue>[Ii]n|[Ss]ince|[Uu]ntil|[Tt]ill|[Yy]ear|[Dd]uring|[Cc]irca|[Bb]y|[Ff]rom|[Bb]etween)"
    r"\s+(?P<y>(?:1[1-9]|20)\d\d)(?![0-9]|[.,]\d)"
)
_EN_FROM_TO_YEARS = re.compile(
    r"(?<![A-Za-z])(?P<cue>[Ff]rom|[Bb]etween)\s+(?P<a>(?:1[1-9]|20)\d\d)\s+(?P<to>to|and|until|through)\s+"
    r"(?P<b>(?:1[1-9]|20)\d\d)(?![0-9]|[.,]\d)"
)
_LETTER_DIGIT = re.compile(r"(?<=[A-Za-z])(?=\d)")
_DOLLAR_PREFIX = re.compile(r"(?<![A-Za-z])(US|HK)\$(?=\d)")
_EN_DMY = re.compile(
    r"(?<![0-9A-Za-z.,/:-])(?P<d>1[3-9]|2\d|3[01])/(?P<m>0?[1-9]|1[0-2])/(?P<y>[12]\d{3})(?![0-9]|/\d)"
)
_IP = re.compile(r"(?<![0-9.])\d{1,3}(?:\.\d{1,3}){3}(?![0-9]|\.\d)")
_APPROX = re.compile(r"(?<![0-9A-Za-z])(?<![0-9]\s)[~～〜](?=\s?\d)\s?")  # "~5 km", not "3 ~ 5"
_EN_SCALE = re.compile(rf"{_NOT_AFTER}(?P<num>{_SNUM})(?P<scale>bn|[kMB])(?![A-Za-z])")


def _en_time(m: re.Match[str]) -> str:
    h, minute, sec, ap = int(m.group("h")), int(m.group("m")), m.group("s"), m.group("ap")
    if minute == 0 and not sec:
        if ap:
            out = en_int(h)
        elif h > 12 or h == 0:
            out = en_int(h) + " hundred"
        else:
            out = en_int(h) + " o'clock"
    else:
        out = en_int(h) + (" oh " if minute < 10 else " ") + en_int(minute)
        if sec:
            s = int(sec)
            out += f" and {en_int(s)} {'second' if s == 1 else 'seconds'}"
    return out + _en_ampm(m)


def _en_ampm(m: re.Match[str]) -> str:
    ap = m.group("ap")
    if not ap:
        return ""
    out = " AM" if ap[0] in "Aa" else " PM"
    if ap.endswith(".") and not m.string[m.end() :].strip():
        out += "."  # "at 9 a.m." ends the sentence
    return out


def _en_money(m: re.Match[str]) -> str:
    names = (_SYMBOLS[m.group("sym")] if m.group("sym") else _CODES[m.group("code")])[0]
    neg = "-" if m.group("neg") else ""
    return _en_amount(names, neg + m.group("num"), m.group("scale"))


def _en_amount(names: tuple[str, str, str | None, str | None], num: str, scale: str | None = None) -> str:
    """ "$3.50" -> "three dollars and fifty cents", "£1" -> "one pound", "$1.5M" -> "... million dollars"."""
    num = _plain(num)
    neg = "minus " if num.startswith("-") else ""
    num = num.lstrip("-")
    if scale:
        return f"{neg}{en_number(num)} {_SCALE_WORDS[_SCALES[scale]]} {names[1]}"
    whole, _, frac = num.partition(".")
    if frac and (names[2] is None or len(frac) > 2):
        return f"{neg}{en_number(num)} {names[1]}"  # "35.5 yuan", "3.125 dollars"
    units = int(whole or "0")
    cents = int((frac + "0")[:2]) if frac else 0
    parts = []
    if units or not cents:
        parts.append(f"{en_int(units)} {names[0] if units == 1 else names[1]}")
    if cents:
        parts.append(f"{en_int(cents)} {names[2] if cents == 1 else names[3]}")
    return neg + " and ".join(parts)


def _en_range(m: re.Match[str]) -> str:
    a, b = m.group("a"), m.group("b")
    if b is None:
        return _en_signed_value(a)
    years = bool(re.fullmatch(r"(?:1[1-9]|20)\d\d", a) and re.fullmatch(r"(?:1[1-9]|20)\d\d", b))
    return f"{_en_signed_value(a, years)} to {_en_signed_value(b, years)}"


def _en_unit(m: re.Match[str]) -> str:
    one, many, _ = _UNITS[m.group("u")]
    single = m.group("b") is None and _plain(m.group("a")) in ("1", "-1")
    return f"{_en_range(m)} {one if single else many}"


def _en_fraction(m: re.Match[str]) -> str:
    a, b = int(m.group(1)), int(m.group(2))
    if m.group(0) == "24/7":
        return "twenty four seven"
    if not (0 < a < b <= 10) or m.group(1).startswith("0"):
        return m.group(0)  # not obviously a fraction: the numbers are read one by one
    one, many = _DENOMINATORS.get(b, (en_ordinal(b), en_ordinal(b) + "s"))
    return f"{en_int(a)} {one if a == 1 else many}"


def _en_day_month(m: re.Match[str]) -> str:
    out = _en_date(_MONTH_NAMES[m["mon"].lower()], int(m["d"]), int(m["y"]) if m["y"] else None, day_first=True)
    if re.search(r"\b[Tt]he\s+$", m.string[: m.start()]):
        out = out[len("the ") :]  # "the 5th of May"
    return out


def _en_ip(m: re.Match[str]) -> str:
    parts = m.group(0).split(".")
    if all(int(p) <= 255 for p in parts):
        return " dot ".join(en_digits(p) for p in parts)
    return " point ".join(en_number(p) for p in parts)


def _en_decade(m: re.Match[str]) -> str:
    n = int(m.group("n").lstrip("'"))
    if n in (100, 1000):
        return "hundreds" if n == 100 else "thousands"  # "1000s of people"
    words = (en_int(n) if n < 100 else en_year(n)).split(" ")
    return " ".join(words[:-1] + [_plural_word(words[-1])])


def normalize_en(text: str) -> str:
    """Spell out the numbers of an English run (see the module docstring)."""
    if not any(c.isdigit() for c in text):
        return text
    text = _LETTER_DIGIT.sub(" ", text)  # "v1.2", "COVID19": the number is a word of its own
    text = _DOLLAR_PREFIX.sub(lambda m: m.group(1) + "D ", text)  # "US$5" -> "USD 5"
    for pattern, read in _EN_RULES:
        text = _sub(pattern, read, text)
    return text


def _sub(pattern: re.Pattern[str], read: Callable[[re.Match[str]], str], text: str) -> str:
    """pattern.sub(read, text), keeping the words apart from a letter or digit they touch."""

    def sub(m: re.Match[str]) -> str:
        out = read(m)
        if out == m.group(0):
            return out
        before = m.string[m.start() - 1 : m.start()]
        after = m.string[m.end() : m.end() + 1]
        if before.isascii() and before.isalnum() and out[:1].isalnum():
            out = " " + out
        if after.isascii() and after.isalnum() and out[-1:].isalnum():
            out += " "
        return out

    return pattern.sub(sub, text)


_EN_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (_APPROX, lambda m: "about "),
    (_PHONE, _en_phone),
    (_ISO_DATE, lambda m: _en_date(int(m["m"]), int(m["d"]), int(m["y"]))),
    (_EN_US_DATE, lambda m: _en_date(int(m["m"]), int(m["d"]), int(m["y"]))),
    (_EN_DMY, lambda m: _en_date(int(m["m"]), int(m["d"]), int(m["y"]), day_first=True)),
    (
        _EN_MONTH_DAY,
        lambda m: _en_date(_MONTH_NAMES[m["mon"].lower()], int(m["d"]), int(m["y"]) if m["y"] else None),
    ),
    (_EN_DAY_MONTH, _en_day_month),
    (_EN_MONTH_YEAR, lambda m: f"{_MONTHS[_MONTH_NAMES[m['mon'].lower()] - 1]} {en_year(int(m['y']))}"),
    (_TIME, _en_time),
    (_HOUR_AMPM, lambda m: en_int(int(m["h"])) + _en_ampm(m)),
    (_RATIO, lambda m: f"{en_number(m[1])} to {en_number(m[2])}"),
    (_MONEY, _en_money),
    (_MONEY_AFTER, lambda m: _en_amount(_CODES[m["code"]][0], m["num"])),
    (_PERCENT, lambda m: _en_range(m) + " percent"),
    (_EN_DECADE, _en_decade),
    (_UNIT, _en_unit),
    (_RANGE, _en_range),
    (_FRACTION, _en_fraction),
    (_ORDINAL, lambda m: en_ordinal(int(_plain(m["n"])))),
    (_EN_FROM_TO_YEARS, lambda m: f"{m['cue']} {en_year(int(m['a']))} {m['to']} {en_year(int(m['b']))}"),
    (_EN_YEAR_CUE, lambda m: f"{m['cue']} {en_year(int(m['y']))}"),
    (_IP, _en_ip),
    (_VERSION, lambda m: " point ".join(en_number(p) for p in m.group(0).split("."))),
    (_EN_SCALE, lambda m: f"{en_number(m['num'])} {_SCALE_WORDS[_SCALES[m['scale']]]}"),
    (_NUMBER, lambda m: en_number(m.group(0))),
    (_DIGITS, lambda m: en_digits(m.group(0))),
]


# ---------------------------------------------------------------------------
# Chinese

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_PHONE_DIGITS = "零幺二三四五六七八九"
# A bare "2" before these is 两: 两个, 两点, 两公里 (but 二月, 二号, 第二).
_ZH_LIANG = re.compile(
    r"(?<![0-9.,第])2(?![0-9]|[.,]\d)(?=个|只|件|本|位|条|张|次|天|周|年(?!级)|岁|种|台|辆|份|部|块|双|对|杯|瓶|碗"
    r"|顿|场|节|家|间|座|棵|把|支|头|匹|封|首|句|项|倍|人|名|队|排|分|点|小时|公里|千克|公斤|斤|米|克|升)"
)
_ZH_LIANG_UNITS = frozenset("公里 米 厘米 毫米 千克 克 毫克 升 毫升 小时 分钟 秒 毫秒".split())
_ZH_YEAR = re.compile(r"(?<![0-9.,])([12]\d{3})(?=年)(?!年(?:前|多|来|左右))")
_ZH_YEAR_RANGE = re.compile(rf"(?<![0-9.,])([12]\d{{3}}){_RANGE_SEP}([12]\d{{3}})(?=年)")


def zh_digits(digits: str, phone: bool = False) -> str:
    table = _ZH_PHONE_DIGITS if phone else _ZH_DIGITS
    return "".join(table[int(d)] for d in digits if d.isdigit())


def zh_int(num: str) -> str:
    """A month, day, hour... : "03" -> 三."""
    return zh_number(str(int(num)))


def zh_number(num: str) -> str:
    """ "1,234.5" -> 一千二百三十四点五, "-3" -> 负三, "2000" -> 两千, "007" -> 零零七."""
    num = _plain(num)
    sign = "负" if num.startswith("-") else ""
    whole, _, frac = num.lstrip("-").partition(".")
    if (len(whole) > 1 and whole.startswith("0")) or len(whole) > 16:
        words = zh_digits(whole)
    else:
        words = cn2an.an2cn(whole or "0", "low")
        if len(words) > 1 and words[0] == "二" and words[1] in "千万亿":
            words = "两" + words[1:]
    return sign + words + ("点" + zh_digits(frac) if frac else "")


def _zh_money_amount(num: str, scale: str | None) -> str:
    num = _plain(num)
    if scale:
        value = Decimal(num).scaleb(_SCALES[scale])
        num = format(value.normalize(), "f")
    if "." in num:
        num = num.rstrip("0").rstrip(".")
    return zh_number(num)


def _zh_phone(m: re.Match[str]) -> str:
    groups = [zh_digits(g, phone=True) for g in _phone_groups(m.group("body"))]
    if m.group("cc"):
        groups.insert(0, "加" + zh_digits(m.group("cc"), phone=True))
    return "，".join(groups)


def _zh_time(m: re.Match[str]) -> str:
    h, minute, sec, ap = int(m.group("h")), int(m.group("m")), m.group("s"), m.group("ap")
    out = _zh_hour(h, ap)
    if minute or sec:
        out += ("零" if minute < 10 else "") + zh_int(str(minute)) + "分"
    if sec:
        s = int(sec)
        out += ("零" if s < 10 else "") + zh_int(str(s)) + "秒"
    return out


def _zh_hour(h: int, ap: str | None) -> str:
    prefix = ""
    if ap:
        if ap[0] in "Aa":
            prefix = "上午"
        else:
            prefix = "中午" if h == 12 else ("晚上" if h >= 6 else "下午")
    return prefix + ("两" if h == 2 else zh_int(str(h))) + "点"


def _zh_money(m: re.Match[str]) -> str:
    name = (_SYMBOLS[m.group("sym")] if m.group("sym") else _CODES[m.group("code")])[1]
    if re.match(r"\s?(?:[美欧日港]?元|英镑|块)", m.string[m.end() :]):
        name = ""  # "￥100元": the text names the currency itself
    neg = "负" if m.group("neg") or m.group("num").startswith(("-", "−")) else ""
    return neg + _zh_money_amount(m.group("num").lstrip("-−"), m.group("scale")) + name


def _zh_money_after(m: re.Match[str]) -> str:
    num = m.group("num")
    neg = "负" if num.startswith(("-", "−")) else ""
    return neg + _zh_money_amount(num.lstrip("-−"), None) + _CODES[m.group("code")][1]


def _zh_percent(m: re.Match[str]) -> str:
    out = "百分之" + zh_number(m.group("a"))
    if m.group("b") is not None:
        out += "到百分之" + zh_number(m.group("b"))
    return out.replace("百分之负", "负百分之")


def _zh_unit(m: re.Match[str]) -> str:
    name = _UNITS[m.group("u")][2]
    a, b = m.group("a"), m.group("b")
    if name in ("摄氏度", "华氏度", "度") and b is None and a.startswith(("-", "−")):
        return "零下" + zh_number(a.lstrip("-−")) + name
    if b is None and _plain(a) == "2" and name in _ZH_LIANG_UNITS:
        return "两" + name
    return _zh_range_words(a, b) + name


def _zh_range_words(a: str, b: str | None, years: bool = False) -> str:
    if years:
        return zh_digits(a) + ("到" + zh_digits(b) if b else "")
    return zh_number(a) + ("到" + zh_number(b) if b is not None else "")


def _zh_range(m: re.Match[str]) -> str:
    a, b = m.group("a"), m.group("b")
    years = bool(re.fullmatch(r"[12]\d{3}", a) and re.fullmatch(r"[12]\d{3}", b)) and m.string.startswith(
        "年", m.end()
    )
    return _zh_range_words(a, b, years)


def _zh_fraction(m: re.Match[str]) -> str:
    a, b = m.group(1), m.group(2)
    if not 0 < int(a) < int(b) or a.startswith("0"):
        return m.group(0)
    return zh_number(b) + "分之" + zh_number(a)


def normalize_zh(text: str) -> str:
    """Spell out the numbers of a Chinese run in characters (see the module docstring)."""
    if not any(c.isdigit() for c in text):
        return text
    text = _DOLLAR_PREFIX.sub(lambda m: m.group(1) + "D ", text)
    for pattern, read in _ZH_RULES:
        text = pattern.sub(read, text)
    return text


_ZH_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (_APPROX, lambda m: "约"),
    (_PHONE, _zh_phone),
    (_ISO_DATE, lambda m: f"{zh_digits(m['y'])}年{zh_int(m['m'])}月{zh_int(m['d'])}日"),
    (_ZH_YEAR_RANGE, lambda m: f"{zh_digits(m[1])}到{zh_digits(m[2])}"),
    (_ZH_YEAR, lambda m: zh_digits(m.group(1))),
    (_TIME, _zh_time),
    (_HOUR_AMPM, lambda m: _zh_hour(int(m["h"]), m["ap"])),
    (_RATIO, lambda m: f"{zh_number(m[1])}比{zh_number(m[2])}"),
    (_MONEY, _zh_money),
    (_MONEY_AFTER, _zh_money_after),
    (_PERCENT, _zh_percent),
    (_UNIT, _zh_unit),
    (_RANGE, _zh_range),
    (_FRACTION, _zh_fraction),
    (_ORDINAL, lambda m: "第" + zh_number(m["n"])),
    (_VERSION, lambda m: "点".join(zh_number(p) for p in m.group(0).split("."))),
    (_ZH_LIANG, lambda m: "两"),
    (_NUMBER, lambda m: zh_number(m.group(0))),
    (_DIGITS, lambda m: zh_digits(m.group(0))),
]
