import pytest

from ledger.metering import segment_cost_micros

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
