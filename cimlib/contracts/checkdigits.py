"""Check digits of Chinese resident ID numbers and unified social credit codes.

The resident ID number (GB 11643-1999) ends in an ISO 7064 MOD 11-2 check character; the unified social
credit code (GB 32100-2015) ends in a MOD 31 check character over its own 31-character alphabet.
"""

from __future__ import annotations

import datetime as _dt

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def id_check_char(first17: str) -> str:
    """Return the ISO 7064 MOD 11-2 check character for the first 17 digits of an ID number.

    Parameters
    ----------
    first17 : str
        The first 17 characters, all digits.

    Returns
    -------
    str
        One of ``0-9`` or ``X``.
    """
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"expected 17 digits, got {first17!r}")
    total = sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True))
    return ID_CHECK_CHARS[total % 11]


def is_valid_id(id_no: str | None) -> bool:
    """Tell whether ``id_no`` is a well-formed 18-character resident ID number.

    It checks the length, the digits, the embedded birth date and the check character.
    """
    if not id_no or len(id_no) != 18 or not id_no[:17].isdigit():
        return False
    try:
        _dt.date(int(id_no[6:10]), int(id_no[10:12]), int(id_no[12:14]))
    except ValueError:
        return False
    return id_check_char(id_no[:17]) == id_no[17].upper()


def uscc_check_char(first17: str) -> str:
    """Return the GB 32100-2015 check character for the first 17 characters of a credit code.

    Parameters
    ----------
    first17 : str
        The first 17 characters, each from the code's 31-character alphabet.

    Returns
    -------
    str
        The check character.
    """
    if len(first17) != 17 or any(c not in USCC_ALPHABET for c in first17):
        raise ValueError(f"expected 17 characters of the credit-code alphabet, got {first17!r}")
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(code: str | None) -> bool:
    """Tell whether ``code`` is a well-formed unified social credit code with a correct check character."""
    if not code or len(code) != 18 or any(c not in USCC_ALPHABET for c in code):
        return False
    return uscc_check_char(code[:17]) == code[17]
