import pytest

from ledger.metering import (
    BILLING_RULES,
    PER_MINUTE,
    PER_SECOND,
    PER_SECOND_FIRST_MINUTE,
    BillingRule,
    CappedCapture,
    billing_rule_for,
    capped_capture,
    segment_cost_micros,
)

# 3.6 credits per hour is exactly 1000 micro-credits per second, so costs are easy to read.
PRICE_1000_PER_SECOND = 3_600_000


@pytest.mark.parametrize(
    ("seconds", "expected_micros"),
    [(0, 0), (1, 1000), (59, 59_000), (60, 60_000), (61, 61_000), (3600, 3_600_000)],
)
def test_segment_cost_per_second(seconds, expected_micros):
    cost = segment_cost_micros(price_per_hour_micros=PRICE_1000_PER_SECOND, seconds=seconds)

    assert cost == expected_micros


@pytest.mark.parametrize(
    ("seconds", "expected_micros"),
    [(0, 0), (1, 60_000), (59, 60_000), (60, 60_000), (61, 120_000), (3600, 3_600_000)],
)
def test_segment_cost_per_minute(seconds, expected_micros):
    cost = segment_cost_micros(
        price_per_hour_micros=PRICE_1000_PER_SECOND, seconds=seconds, increment_seconds=60
    )

    assert cost == expected_micros


@pytest.mark.parametrize(
    ("seconds", "expected_micros"),
    [(0, 60_000), (1, 60_000), (59, 60_000), (60, 60_000), (61, 61_000), (3600, 3_600_000)],
)
def test_segment_cost_first_minute_minimum(seconds, expected_micros):
    cost = segment_cost_micros(
        price_per_hour_micros=PRICE_1000_PER_SECOND, seconds=seconds, minimum_seconds=60
    )

    assert cost == expected_micros


@pytest.mark.parametrize(
    ("seconds", "expected_micros"),
    [(0, 0), (1, 1), (3599, 1), (3600, 1), (3601, 2), (7200, 2)],
)
def test_segment_cost_rounds_fraction_up(seconds, expected_micros):
    # One micro-credit per hour: any started hour costs one micro-credit.
    cost = segment_cost_micros(price_per_hour_micros=1, seconds=seconds)

    assert cost == expected_micros


def test_segment_cost_uneven_price_is_exact():
    # 0.36 credits per hour for 10 seconds is 1000 micro-credits exactly; 7 seconds is 700.
    assert segment_cost_micros(price_per_hour_micros=360_000, seconds=10) == 1000
    assert segment_cost_micros(price_per_hour_micros=360_000, seconds=7) == 700
    # 1 credit per hour for 1 second is 277.77... micro-credits, billed as 278.
    assert segment_cost_micros(price_per_hour_micros=1_000_000, seconds=1) == 278


def test_segment_cost_large_values_stay_exact():
    price = 10**15
    seconds = 10**9 + 1

    cost = segment_cost_micros(price_per_hour_micros=price, seconds=seconds)

    assert cost == -(-price * seconds // 3600)


@pytest.mark.parametrize(
    "arguments",
    [
        {"price_per_hour_micros": -1, "seconds": 1},
        {"price_per_hour_micros": 1, "seconds": -1},
        {"price_per_hour_micros": 1, "seconds": 1, "increment_seconds": 0},
        {"price_per_hour_micros": 1, "seconds": 1, "minimum_seconds": -1},
    ],
)
def test_segment_cost_rejects_negative_input(arguments):
    with pytest.raises(ValueError):
        segment_cost_micros(**arguments)


@pytest.mark.parametrize(
    "arguments",
    [
        {"price_per_hour_micros": 1.5, "seconds": 1},
        {"price_per_hour_micros": 1, "seconds": 1.0},
        {"price_per_hour_micros": 1, "seconds": True},
    ],
)
def test_segment_cost_rejects_non_int(arguments):
    with pytest.raises(TypeError):
        segment_cost_micros(**arguments)


BOUNDARY_SECONDS = (0, 1, 59, 60, 61, 3600)


@pytest.mark.parametrize(
    ("rule", "expected_billed_seconds"),
    [
        (PER_SECOND, (0, 1, 59, 60, 61, 3600)),
        (PER_MINUTE, (0, 60, 60, 60, 120, 3600)),
        (PER_SECOND_FIRST_MINUTE, (60, 60, 60, 60, 61, 3600)),
    ],
    ids=["per_second", "per_minute", "per_second_first_minute"],
)
def test_billing_rule_boundaries(rule, expected_billed_seconds):
    for seconds, expected in zip(BOUNDARY_SECONDS, expected_billed_seconds, strict=True):
        assert rule.billed_seconds(seconds) == expected, seconds
        cost = rule.cost_micros(price_per_hour_micros=PRICE_1000_PER_SECOND, seconds=seconds)
        assert cost == expected * 1000, seconds


@pytest.mark.parametrize(
    ("rule", "seconds", "expected_micros"),
    [
        # 1 credit per hour is 277.77... micro-credits per second.
        (PER_SECOND, 1, 278),
        (PER_SECOND, 59, 16_389),
        (PER_SECOND, 61, 16_945),
        (PER_MINUTE, 1, 16_667),
        (PER_MINUTE, 61, 33_334),
        (PER_SECOND_FIRST_MINUTE, 0, 16_667),
        (PER_SECOND_FIRST_MINUTE, 61, 16_945),
        (PER_SECOND, 3600, 1_000_000),
    ],
)
def test_billing_rule_rounds_up_to_micro_credit(rule, seconds, expected_micros):
    cost = rule.cost_micros(price_per_hour_micros=1_000_000, seconds=seconds)

    assert cost == expected_micros


def test_named_billing_rules():
    assert BILLING_RULES == {
        "per_second": BillingRule(increment_seconds=1, minimum_seconds=0),
        "per_minute": BillingRule(increment_seconds=60, minimum_seconds=0),
        "per_second_first_minute": BillingRule(increment_seconds=1, minimum_seconds=60),
    }


@pytest.mark.parametrize(
    ("provider", "minimum", "expected"),
    [
        ("local", 0, PER_SECOND),
        ("runpod", 0, PER_SECOND),
        ("aws", 0, PER_SECOND_FIRST_MINUTE),
        ("aws", 30, PER_SECOND_FIRST_MINUTE),
        ("fake", 120, BillingRule(increment_seconds=1, minimum_seconds=120)),
        ("unknown", 0, PER_SECOND),
    ],
)
def test_billing_rule_for_provider(provider, minimum, expected):
    assert billing_rule_for(provider, minimum_billed_seconds=minimum) == expected


@pytest.mark.parametrize(
    "arguments",
    [{"increment_seconds": 0}, {"minimum_seconds": -1}],
)
def test_billing_rule_rejects_invalid_settings(arguments):
    with pytest.raises(ValueError):
        BillingRule(**arguments)


def test_billing_rule_rejects_float_seconds():
    with pytest.raises(TypeError, match="seconds must be an int, not float"):
        PER_SECOND.cost_micros(price_per_hour_micros=1, seconds=1.5)


@pytest.mark.parametrize(
    ("cost", "held", "expected"),
    [
        (0, 1_000, CappedCapture(capture_micros=0, release_micros=1_000, over_micros=0)),
        (999, 1_000, CappedCapture(capture_micros=999, release_micros=1, over_micros=0)),
        (1_000, 1_000, CappedCapture(capture_micros=1_000, release_micros=0, over_micros=0)),
        (1_001, 1_000, CappedCapture(capture_micros=1_000, release_micros=0, over_micros=1)),
        (5_000, 1_000, CappedCapture(capture_micros=1_000, release_micros=0, over_micros=4_000)),
        (0, 0, CappedCapture(capture_micros=0, release_micros=0, over_micros=0)),
    ],
    ids=["nothing", "one-under", "exact", "one-over", "far-over", "empty-hold"],
)
def test_capped_capture_splits_cost(cost, held, expected):
    assert capped_capture(cost, held) == expected


@pytest.mark.parametrize(("cost", "held"), [(-1, 10), (10, -1)])
def test_capped_capture_rejects_negative(cost, held):
    with pytest.raises(ValueError, match="must not be negative"):
        capped_capture(cost, held)


def test_capped_capture_rejects_float():
    with pytest.raises(TypeError, match="cost_micros must be an int, not float"):
        capped_capture(1.0, 10)
