"""Check digits of the structured identifiers the PII redactor recognises (and the corpus generates).

Pure functions, no dependencies: the recogniser uses the validators to tell a real identifier from a
number that merely has the right shape (an order number, an invoice id); the evaluation corpus uses the
generators to produce valid ones and deliberately broken ones.
"""

from __future__ import annotations

import datetime as dt

# GB 11643-1999: weights 2^(17-i) mod 11 for the 17 body digits; ISO 7064 MOD 11-2 check character.
_PRC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_PRC_CHECK = "10X98765432"


def prc_id_check_char(body17: str) -> str:
    """The 18th character of a PRC resident identity number whose first 17 digits are ``body17``."""
    if len(body17) != 17 or not body17.isascii() or not body17.isdigit():
        raise ValueError("the body of a PRC ID is 17 ASCII digits")
    total = sum(int(d) * w for d, w in zip(body17, _PRC_WEIGHTS, strict=True))
    return _PRC_CHECK[total % 11]


def prc_id_valid(value: str) -> bool:
    """18 characters, a plausible birth date (YYYYMMDD at 6..14) and a correct MOD 11-2 check character."""
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit():
        return False
    if value[0] == "0":  # region codes start at 11 (Beijing)
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not dt.date(1900, 1, 1) <= born <= dt.date.today():
        return False
    return prc_id_check_char(value[:17]) == value[17].upper()


def prc_id15_plausible(value: str) -> bool:
    """A first-generation PRC ID (15 digits, issued until 2004, void since 2013 but still in old records): a region
    code and a birth date YYMMDD in the 1900s at 6..12. It has no check character, so only context tells it from
    any other 15-digit number."""
    if len(value) != 15 or not value.isascii() or not value.isdigit() or value[0] == "0":
        return False
    try:
        dt.date(1900 + int(value[6:8]), int(value[8:10]), int(value[10:12]))
    except ValueError:
        return False
    return True


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(digits: str) -> bool:
    if not digits.isascii() or not digits.isdigit() or len(digits) < 2:
        return False
    return luhn_check_digit(digits[:-1]) == digits[-1]


def _iban_number(rearranged: str) -> int:
    return int("".join(str(int(c, 36)) for c in rearranged))


def iban_valid(value: str) -> bool:
    """ISO 13616: country code, two check digits, 11..30 alphanumerics; mod 97 of the rearranged number is 1."""
    s = value.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s.isascii() or not s.isalnum():
        return False
    if not (s[:2].isalpha() and s[2:4].isdigit()):
        return False
    return _iban_number(s[4:] + s[:4]) % 97 == 1


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits of the IBAN of ``bban`` in ``country``."""
    n = _iban_number((bban + country + "00").upper())
    return f"{98 - n % 97:02d}"
