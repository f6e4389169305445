"""The numbering plan: every valid prefix accepted, everything else refused."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dialgw.numbers import is_valid_number, number_kind

LANDLINE = ["02", "03", "04", "08", "09"]
MOBILE = ["050", "051", "052", "053", "054", "055", "058"]
VOIP = ["072", "073", "074", "076", "077", "079"]

digits = st.text(alphabet="0123456789", min_size=7, max_size=7)


class ValidNumbersTests(SynchronousTestCase):
    @given(st.sampled_from(LANDLINE), digits)
    def test_landlines_are_accepted(self, prefix: str, rest: str) -> None:
        self.assertTrue(is_valid_number(prefix + rest))
        self.assertEqual(number_kind(prefix + rest), "landline")

    @given(st.sampled_from(MOBILE), digits)
    def test_mobiles_are_accepted(self, prefix: str, rest: str) -> None:
        self.assertEqual(number_kind(prefix + rest), "mobile")

    @given(st.sampled_from(VOIP), digits)
    def test_voip_numbers_are_accepted(self, prefix: str, rest: str) -> None:
        self.assertEqual(number_kind(prefix + rest), "voip")


def _is_plan_number(text: str) -> bool:
    """An independent statement of SPEC §1's plan, to check the regex against."""
    if not text.isascii() or not text.isdigit():
        return False
    if len(text) == 9:
        return text[:2] in LANDLINE
    if len(text) == 10:
        return text[:3] in MOBILE + VOIP
    return False


class InvalidNumbersTests(SynchronousTestCase):
    REFUSED = [
        "", "100", "101", "102", "112", "*100", "#31#", "1800123456", "1700123456",
        "1900123456", "0561234567", "0571234567", "0591234567", "0751234567",
        "0781234567", "011234567", "0121234567", "0151234567", "02123456",
        "0212345678", "052712110", "05271211022", "+972527121102", "972527121102",
        "052-7121102", "052 7121102", " 0527121102", "0527121102 ", "0527121102\n",
        "0527121102\x00", "٠٥٢٧١٢١١٠٢", "０５２７１２１１０２", "05２7121102", "0527121102\u2028",
        "0061234567", "0001234567", "0621234567",
    ]

    def test_refused_numbers(self) -> None:
        for text in self.REFUSED:
            self.assertFalse(is_valid_number(text), f"{text!r} must be refused")

    def test_non_strings_are_refused(self) -> None:
        for value in [527121102, None, ["0527121102"], b"0527121102", 5.27e8]:
            self.assertFalse(is_valid_number(value), f"{value!r} must be refused")

    @given(st.text(max_size=14))
    def test_any_text_matches_the_plan(self, text: str) -> None:
        self.assertEqual(is_valid_number(text), _is_plan_number(text))

    @given(st.text(alphabet="0123456789", max_size=12))
    def test_any_digits_match_the_plan(self, text: str) -> None:
        self.assertEqual(is_valid_number(text), _is_plan_number(text))
