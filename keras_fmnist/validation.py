"""Argument checks shared by the layers and schedules of this package.

Each raises a ValueError naming the argument, the allowed values and the value received,
and returns the argument as a plain Python number. bools are rejected although Python
counts them as numbers: `rate=True` is always a mistake.
"""

import numbers


def validate_rate(rate):
    """A drop rate: a real number in [0, 1), returned as a float."""
    if (
        isinstance(rate, bool)
        or not isinstance(rate, numbers.Real)
        or not 0.0 <= rate < 1.0
    ):
        raise ValueError(
            "Invalid value received for argument `rate`. Expected a float in "
            f"[0, 1) (0 <= rate < 1). Received: rate={rate!r}"
        )
    return float(rate)


def validate_positive_int(name, value, allow_none=False):
    """An integer >= 1 (or None when `allow_none`), returned as an int (or None)."""
    if allow_none and value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < 1
    ):
        allowed = "integer >= 1 or None" if allow_none else "integer >= 1"
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected an "
            f"{allowed}. Received: {name}={value!r}"
        )
    return int(value)


def int_pair(value, minimum, allow_bool=True):
    """An int n as (n, n), or a two-element sequence of ints, each >= `minimum`, returned
    as a tuple of Python ints; None when `value` is neither (the caller raises its own
    message). `allow_bool=False` refuses True/False, which Python counts as ints."""

    def acceptable(v):
        if isinstance(v, bool) and not allow_bool:
            return False
        return isinstance(v, numbers.Integral) and v >= minimum

    pair = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        pair = tuple(pair)
    except TypeError:
        return None
    if len(pair) != 2 or not all(map(acceptable, pair)):
        return None
    return tuple(int(v) for v in pair)


def symmetric_padding_pair(value):
    """None, an int >= 0 or a pair of them, returned as None or a tuple (ph, pw)."""
    if value is None:
        return None
    pair = int_pair(value, 0, allow_bool=False)
    if pair is None:
        raise ValueError(
            "Invalid value received for argument `symmetric_padding`. Expected None, an "
            f"integer >= 0 or a pair of them. Received: symmetric_padding={value!r}"
        )
    return pair
