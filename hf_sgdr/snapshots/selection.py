"""Choosing members by name or count: one rule for `snapshots=` and `checkpoints=`.

A single string is one name (not a sequence of one-letter names); an int n is the last n; a list or tuple
holds names. Anything else (`True`, a dict, a set, a path) is refused naming the parameter, so a careless
value fails at load rather than as a puzzling lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ..validation import check_int

T = TypeVar("T")


def select_members(
    parameter: str, choice: object, available: Sequence[str], items: Sequence[T], source: str
) -> list[T]:
    """The `items` (named by `available`, oldest first, found in `source`) that `choice` selects: all (None), the
    last n (an int), one name (a str) or the names listed (a list or tuple of str, each once)."""
    if choice is None:
        return list(items)
    if isinstance(choice, int) and not isinstance(choice, bool):
        count = check_int(parameter, choice, minimum=1, maximum=len(items))
        return list(items[len(items) - count :])
    names = [choice] if isinstance(choice, str) else choice
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise TypeError(
            f"{parameter} must be a name, a list of names or an int n (the last n); got {type(choice).__name__} "
            f"{choice!r}"
        )
    if not names:
        raise ValueError(f"{parameter}=[] selects nothing; pass names from {list(available)}, or None for all")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{parameter} names {repeated} more than once; each member is used once")
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"{parameter} {unknown} are not in {source}; it holds {list(available)}")
    return [items[list(available).index(name)] for name in names]
