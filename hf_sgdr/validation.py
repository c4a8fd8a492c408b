"""Checking and coercing hyper-parameters.

Every public entry point (the schedule, the scheduler, the `transformers` factory, the command line)
funnels its numbers through these helpers, so a bad value always fails the same way: a `ValueError`
that names the parameter, shows the value and states the accepted range. Strings are accepted and
converted because `--lr_scheduler_kwargs` from a command line leaves values such as ``"-1"`` or
``"1e-3"`` as strings.
"""

from __future__ import annotations

import math
from typing import Any

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _fail(name: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{name} must be {accepted}; got {value!r}")


def _range_text(kind: str, minimum: float | None, maximum: float | None, min_open: bool, max_open: bool) -> str:
    if minimum is not None and maximum is not None:
        left = "(" if min_open else "["
        right = ")" if max_open else "]"
        return f"{kind} in {left}{minimum:g}, {maximum:g}{right}"
    if minimum is not None:
        return f"{kind} {'>' if min_open else '>='} {minimum:g}"
    if maximum is not None:
        return f"{kind} {'<' if max_open else '<='} {maximum:g}"
    return kind


def _in_range(x: float, minimum: float | None, maximum: float | None, min_open: bool, max_open: bool) -> bool:
    if minimum is not None and (x < minimum or (min_open and x == minimum)):
        return False
    return not (maximum is not None and (x > maximum or (max_open and x == maximum)))


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return `value` as an `int` within [minimum, maximum], or raise `ValueError` naming `name`.

    Integral floats (``10.0``) and numeric strings (``"10"``, ``"1e3"``) are accepted; booleans,
    fractions, NaN and infinities are not.
    """
    accepted = _range_text("an integer", minimum, maximum, False, False)
    if isinstance(value, bool) or value is None:
        raise _fail(name, value, accepted)
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                raise _fail(name, value, accepted) from None
    if isinstance(number, float):
        if not math.isfinite(number) or not number.is_integer():
            raise _fail(name, value, accepted)
        number = int(number)
    if not isinstance(number, int):
        try:
            number = int(number)  # numpy integers and 0-d tensors
        except (TypeError, ValueError):
            raise _fail(name, value, accepted) from None
        if number != value:
            raise _fail(name, value, accepted)
    if not _in_range(number, minimum, maximum, False, False):
        raise _fail(name, value, accepted)
    return number


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
) -> float:
    """Return `value` as a finite Python `float` within the given bounds, or raise `ValueError`.

    `min_open` / `max_open` make a bound exclusive. The result is always a builtin `float` (never a
    numpy scalar) so that it survives `torch.load(..., weights_only=True)` inside a scheduler state.
    """
    accepted = _range_text("a finite number", minimum, maximum, min_open, max_open)
    if isinstance(value, bool) or value is None:
        raise _fail(name, value, accepted)
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise _fail(name, value, accepted) from None
    if not math.isfinite(number) or not _in_range(number, minimum, maximum, min_open, max_open):
        raise _fail(name, value, accepted)
    return number


def check_bool(name: str, value: Any) -> bool:
    """Return `value` as a `bool`; accepts booleans, 0/1 and the usual yes/no spellings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(name, value, "a boolean (true/false)")


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a finite int or float (not a bool), else `None`: for numbers read from logs
    and metrics, where anything else is skipped, not refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
