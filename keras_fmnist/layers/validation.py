"""Argument checks shared by the regularisation layers and their schedules.

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
