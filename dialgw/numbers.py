"""The Israeli domestic numbering plan that dialgw accepts (SPEC §1, Numbers).

Only these reach FreeSWITCH: digits only, no ``+972``, no separators.

- landline: ``0`` + one of ``2 3 4 8 9`` + 7 digits (9 digits);
- mobile: ``050``-``055`` or ``058`` + 7 digits (10 digits);
- VoIP: ``072 073 074 076 077 079`` + 7 digits (10 digits).

Emergency and short codes, ``1-800``/``1-700``/``1-900``, ``056``, ``057``,
``059``, ``075``, ``078``, ``01x``, wrong lengths and non-ASCII digits are all
refused: whatever is not matched here is never dialed.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"0[23489][0-9]{7}|05[0-58][0-9]{7}|07[234679][0-9]{7}", re.ASCII)


def is_valid_number(value: object) -> bool:
    """Whether ``value`` is a string holding a dialable Israeli domestic number."""
    return isinstance(value, str) and _NUMBER.fullmatch(value) is not None


def number_kind(value: str) -> str | None:
    """``landline``, ``mobile`` or ``voip`` for a valid number, else None."""
    if not is_valid_number(value):
        return None
    if value[1] == "5":
        return "mobile"
    if value[1] == "7":
        return "voip"
    return "landline"
