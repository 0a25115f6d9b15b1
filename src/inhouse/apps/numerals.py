"""Chinese numerals as people write amounts and counts: 五千, 一万二千, 两万, 十五, 1万2千. The support assistant's
refund limits and the date words' counts ("三天后", "十五号") read them here."""

from __future__ import annotations

import re

_ZH_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_UNIT = {"十": 10, "百": 100, "千": 1000}


def zh_number(text: str) -> float | None:
    """The value of Chinese numerals, digits allowed among them: 五千 5000, 一万二千 12000, 一万二 12000 (the spoken
    short form: a last digit right after a unit counts in the next lower place), 一万零五 10005, 十五 15, 1万2千
    12000. None when it is not a number (二三)."""
    total = section = 0.0
    number: float | None = None
    last_unit, zero = 0, False  # zero: a 零 since the last unit, so 一万零五 is 10,005 and not 15,000
    for token in re.findall(r"\d+(?:\.\d+)?|.", text):
        if token[0].isdigit() or token in _ZH_DIGIT:
            if number:  # two digits in a row; only 零 may come before another one
                return None
            number = float(token) if token[0].isdigit() else float(_ZH_DIGIT[token])
            zero = zero or token in "零〇"
        elif token in _ZH_UNIT:
            section += (1.0 if number is None else number) * _ZH_UNIT[token]
            number, last_unit, zero = None, _ZH_UNIT[token], False
        elif token == "万":
            total += (section + (number or 0.0)) * 10_000
            section, number, last_unit, zero = 0.0, None, 10_000, False
        elif token == "亿":
            total = (total + section + (number or 0.0)) * 100_000_000
            section, number, last_unit, zero = 0.0, None, 100_000_000, False
        else:
            return None
    if number is not None:
        short = last_unit >= 100 and not zero and number == int(number) and number < 10
        section += number * (last_unit // 10 if short else 1)
    return total + section
