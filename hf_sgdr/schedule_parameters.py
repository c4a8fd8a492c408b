"""The user-facing parameters of the SGDR schedule, declared once (layer 1, no torch).

Every front end derives its part from `SCHEDULE_PARAMETERS`: the checks of `SGDRSchedule` and of
`build_schedule`'s keywords (`SGDRScheduler(**params)`, `AdaptiveSGDR(**params)`), the accepted
`lr_scheduler_kwargs` keys and their help (`registration.SCHEDULER_KWARGS`), the `hf-sgdr describe` /
`plot` flags, and the `SGDROptions` fields (`sgdr_<name>`, on a command line also `--<name>`). A new
parameter is one entry here plus the math that uses it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .validation import check_bool, check_float, check_int

DEFAULT_NUM_CYCLES = 4
#: The largest step count any parameter or training budget may name (10^9 optimizer steps). It bounds the work of
#: every budget-wide answer (fit, warnings, describe, plot): with `T_mult` barely above 1 the boundary index grows
#: with the number of distinct cycle lengths, about the square root of the steps it covers.
MAX_STEPS = 10**9
#: The largest `T_mult`: cycle lengths stay finite floats for every cycle a budget of `MAX_STEPS` can reach.
MAX_T_MULT = 1000.0


@dataclass(frozen=True)
class ScheduleParameter:
    """One parameter: its name everywhere, its type and default, its accepted range and its help text.

    `nullable`: `None` is a value ("not given", "no limit"). `option`: also an `SGDROptions` field
    (False where the `Trainer` owns the value: the warmup, the peak lr). `shape`: it shapes the lr curve
    (False for the optimizer-reset flag, which the torch scheduler applies). `per_group`: one value, or one
    per param group (a list, or a comma-separated string on a command line). `aliases`: other names that
    `lr_scheduler_kwargs` accepts for it (transformers' own, so that switching a schedule changes only its name).
    """

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False
    max_open: bool = False
    nullable: bool = False
    option: bool = True
    shape: bool = True
    per_group: bool = False
    aliases: tuple[str, ...] = ()

    def check(self, value: Any, name: str | None = None) -> Any:
        """`value` coerced to the parameter's type and range (command lines leave strings), or `ValueError`
        naming `name` (default: the parameter's own name). A cycle list is checked by `parse_cycles`; a
        per-group list comes back as a tuple."""
        name = name or self.name
        if value is None and self.nullable:
            return None
        if self.per_group:
            values = value.split(",") if isinstance(value, str) and "," in value else value
            if isinstance(values, (list, tuple)):
                if not values:
                    raise ValueError(f"{name} must be a number or a non-empty list of numbers, one per param group")
                return tuple(self._check_one(v, f"{name}[{i}]") for i, v in enumerate(values))
        return self._check_one(value, name)

    def _check_one(self, value: Any, name: str) -> Any:
        if self.type is int:
            return check_int(name, value, minimum=_as_int(self.minimum), maximum=_as_int(self.maximum))
        if self.type is float:
            return check_float(
                name, value, minimum=self.minimum, maximum=self.maximum, min_open=self.min_open, max_open=self.max_open
            )
        if self.type is bool:
            return check_bool(name, value)
        return value


def _as_int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


SCHEDULE_PARAMETERS: tuple[ScheduleParameter, ...] = (
    ScheduleParameter(
        "T_0", int, None,
        "steps in the first cycle (integer in [1, 10^9]); omit to fit the budget with num_cycles",
        minimum=1, maximum=MAX_STEPS, nullable=True,
    ),
    ScheduleParameter(
        "num_cycles", int, None,
        "number of cycles fitted to the training budget so that it ends on a cycle end "
        f"(default {DEFAULT_NUM_CYCLES} when T_0 is not given)",
        minimum=1, maximum=MAX_STEPS, nullable=True,
    ),
    ScheduleParameter(
        "T_mult", float, 1.0, "cycle length growth factor, any float in [1, 1000] (default 1)",
        minimum=1.0, maximum=MAX_T_MULT,
    ),
    ScheduleParameter(
        "eta_min", float, 0.0, "lr floor, absolute, >= 0, one value or one per param group (default 0)",
        minimum=0.0, per_group=True, aliases=("min_lr",),
    ),
    ScheduleParameter(
        "eta_min_ratio", float, None,
        "lr floor relative to each param group's peak, in [0, 1), instead of eta_min (default: none)",
        minimum=0.0, maximum=1.0, max_open=True, nullable=True, aliases=("min_lr_rate",),
    ),
    ScheduleParameter(
        "eta_max", float, None, "peak lr for every param group (default: each group's initial lr)",
        minimum=0.0, min_open=True, nullable=True, option=False,
    ),
    ScheduleParameter(
        "lr_decay", float, 1.0, "per-cycle factor in (0, 1] on peak and floor (default 1)",
        minimum=0.0, maximum=1.0, min_open=True,
    ),
    ScheduleParameter(
        "warmup_steps", int, 0, "initial linear warmup steps before cycle 0 (default 0; the Trainer passes its own)",
        minimum=0, maximum=MAX_STEPS, option=False,
    ),
    ScheduleParameter(
        "warmup_start_lr", float, 0.0, "lr at step 0 of the initial warmup (default 0)", minimum=0.0, option=False
    ),
    ScheduleParameter(
        "restart_warmup_steps", int, 0, "linear warmup at the start of every later cycle, < T_0 (default 0)",
        minimum=0, maximum=MAX_STEPS,
    ),
    ScheduleParameter(
        "restart_warmup_ratio", float, None,
        "linear warmup at the start of every later cycle as a fraction of that cycle, in [0, 1), instead of "
        "restart_warmup_steps; it grows with the cycles (default: none)",
        minimum=0.0, maximum=1.0, max_open=True, nullable=True,
    ),
    ScheduleParameter(
        "cycle_limit", int, None, "after this many cycles the lr holds at the last floor (default: no limit)",
        minimum=1, maximum=MAX_STEPS, nullable=True, option=False,
    ),
    ScheduleParameter(
        "cycles", str, None,
        "explicit cycles instead of T_0/T_mult: [[length, peak], ...] or 'length:peak,...', length in steps or as a "
        "fraction of the budget, peak a factor on the lr (e.g. [[0.4, 1], [0.15, 0.5], [0.15, 0.5], [0.15, 0.5], "
        "[0.15, 0.5]])",
        nullable=True,
    ),
    ScheduleParameter(
        "reset_optimizer_state", bool, False, "reset optimizer moments/momentum at each restart (default false)",
        shape=False,
    ),
)  # fmt: skip

#: The training budget: not a schedule parameter (the Trainer or the caller owns it), but bounded alike.
NUM_TRAINING_STEPS = ScheduleParameter(
    "num_training_steps", int, None, "the training budget in optimizer steps (integer in [1, 10^9])",
    minimum=1, maximum=MAX_STEPS, option=False,
)  # fmt: skip
#: The parameters by name.
PARAMETERS: dict[str, ScheduleParameter] = {p.name: p for p in SCHEDULE_PARAMETERS}
#: Other names `lr_scheduler_kwargs` accepts, and the parameter each one means.
ALIASES: dict[str, str] = {alias: p.name for p in SCHEDULE_PARAMETERS for alias in p.aliases}
#: The parameters that shape the lr curve: `build_schedule`'s keywords.
SHAPE_PARAMETERS: tuple[str, ...] = tuple(p.name for p in SCHEDULE_PARAMETERS if p.shape)


def default(name: str) -> Any:
    """The default of parameter `name` (what `SGDRSchedule`'s fields default to)."""
    return PARAMETERS[name].default


def check_names(given: Iterable[str], accepted: Iterable[str], where: str) -> None:
    """Refuse names outside `accepted`, with the closest accepted name as a hint (`TypeError`, as Python
    raises for an unknown keyword argument)."""
    accepted = list(accepted)
    unknown = [name for name in given if name not in accepted]
    if unknown:
        raise TypeError(f"{where} got unknown parameter(s) {unknown_text(unknown, accepted)}; accepted: "
                        f"{', '.join(accepted)}")  # fmt: skip


def unknown_text(unknown: Iterable[str], accepted: Iterable[str]) -> str:
    """`'T_multi' (did you mean 'T_mult'?), ...` for error messages."""
    accepted = list(accepted)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, accepted, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(hints)
