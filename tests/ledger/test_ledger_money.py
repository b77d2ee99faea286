from decimal import Decimal

import pytest

from ledger.money import MICROS_PER_CREDIT, credits_to_micros, micros_to_credits


@pytest.mark.parametrize(
    ("value", "expected_micros"),
    [
        ("0", 0),
        ("-0", 0),
        ("0.000001", 1),
        ("1", 1_000_000),
        ("1.5", 1_500_000),
        ("12.345678", 12_345_678),
        ("2.5000000000", 2_500_000),
        ("1e3", 1_000_000_000),
        ("1000000000000", 10**18),
        (Decimal("0.36"), 360_000),
        (7, 7_000_000),
        (10**12, 10**18),
    ],
)
def test_credits_to_micros_converts_exactly(value, expected_micros):
    assert credits_to_micros(value) == expected_micros


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("NaN", "must be a finite number"),
        ("sNaN", "must be a finite number"),
        ("Infinity", "must be a finite number"),
        ("-Infinity", "must be a finite number"),
        ("-0.000001", "must not be negative"),
        (-1, "must not be negative"),
        ("0.0000001", "more than 6 decimal places"),
        ("1.0000000000000000000000000000001", "more than 6 decimal places"),
        ("1e-999999999", "more than 6 decimal places"),
        ("1000000000000.000001", "above the maximum 1000000000000"),
        ("1e999999999", "above the maximum 1000000000000"),
        (10**12 + 1, "above the maximum 1000000000000"),
        ("twelve", "not a decimal number"),
        ("", "not a decimal number"),
    ],
)
def test_credits_to_micros_rejects_invalid_value(value, message):
    with pytest.raises(ValueError, match=message):
        credits_to_micros(value)


@pytest.mark.parametrize("value", [1.5, True, None])
def test_credits_to_micros_rejects_other_types(value):
    with pytest.raises(TypeError):
        credits_to_micros(value)


@pytest.mark.parametrize(
    ("micros", "expected"),
    [
        (0, "0.000000"),
        (1, "0.000001"),
        (1_500_000, "1.500000"),
        (-3, "-0.000003"),
        (10**30 + 1, "1000000000000000000000000.000001"),
    ],
)
def test_micros_to_credits_has_six_places(micros, expected):
    credits = micros_to_credits(micros)

    assert str(credits) == expected
    assert credits.as_tuple().exponent == -6


def test_micros_to_credits_round_trips():
    for micros in (0, 1, 999_999, MICROS_PER_CREDIT, 123_456_789_012):
        assert credits_to_micros(micros_to_credits(micros)) == micros


def test_micros_to_credits_rejects_float():
    with pytest.raises(TypeError):
        micros_to_credits(1.0)
