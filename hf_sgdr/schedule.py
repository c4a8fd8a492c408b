"""The SGDR schedule as pure arithmetic (no torch): layer 1 of the package.

`t` is the number of completed scheduler steps (0 right after construction, as in torch). With `W`
warmup steps and `s = t - W`, cycle `i` covers `B_i <= s < B_{i+1}` where `B_0 = 0` and
`B_{i+1} = B_i + T_i`, `T_i = max(1, floor(T_0 * T_mult**i + 0.5))`. Boundaries are Python integers,
so an event (a cycle end, a restart) is an integer comparison, never a float one. Inside cycle `i`,
with `d = lr_decay**i`::

    lr = d*eta_min + (d*eta_max - d*eta_min) * (1 + cos(pi * T_cur / T_i)) / 2

which equals torch's `CosineAnnealingWarmRestarts` bit for bit for integer `T_mult`, `lr_decay = 1` and float
lrs (a float32 tensor lr is this value rounded once, within one ulp of torch's float32 arithmetic).

Instead of `T_0`/`T_mult`, a schedule may list its cycles: each one's length (steps, or a fraction of the
budget after the warmup) and peak (a factor on the param group's peak), e.g. one long fine-tuning cycle
then four short ones at half its peak (`parse_cycles`). Shrinking cycles need no `T_mult < 1`: list them.

Everything else in the package asks this module; nothing re-derives the arithmetic.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from .schedule_parameters import (
    DEFAULT_NUM_CYCLES,
    MAX_STEPS,
    NUM_TRAINING_STEPS,
    PARAMETERS,
    SHAPE_PARAMETERS,
    check_names,
    default,
)
from .validation import check_float, check_int

#: Largest step the schedule answers for (torch keeps `last_epoch` in an int64 in checkpoints).
MAX_STEP = 2**63 - 1


class CyclePosition(NamedTuple):
    """Where a step falls in the schedule.

    `cycle` is the index of the cycle that step `t` belongs to (0 during the initial warmup, and
    `cycle_limit` once the schedule has finished its last cycle and holds its floor). `start` is the
    absolute step at which that cycle begins, `length` its number of steps (`None` while holding),
    `t_cur` the steps since `start` (negative during the initial warmup).
    """

    cycle: int
    start: int
    length: int | None
    t_cur: int

    @property
    def in_warmup(self) -> bool:
        """True during the initial (pre-cycle) warmup."""
        return self.t_cur < 0

    @property
    def finished(self) -> bool:
        """True once the last cycle allowed by `cycle_limit` has ended."""
        return self.length is None

    @property
    def fraction(self) -> float:
        """Position inside the cycle in [0, 1): 0 during warmup, 0 while holding."""
        if self.length is None or self.t_cur < 0:
            return 0.0
        return self.t_cur / self.length


class CycleInfo(NamedTuple):
    """One row of `SGDRSchedule.describe()`: a cycle's extent (absolute steps) and lr range."""

    cycle: int
    start: int
    end: int
    length: int
    max_lr: float
    min_lr: float


class SchedulePiece(NamedTuple):
    """One smooth stretch of the schedule (`begin <= t < end`) bound to the param groups' peaks.

    This is where the lr formula lives. With `x = (t - origin) / span`: a "linear" piece gives
    `floor + amplitude * x` (the warmups), a "cosine" piece `floor + amplitude * (1 + cos(pi * x)) / 2`,
    a "constant" piece `floor` (the hold after the last cycle). A scheduler keeps the current piece
    and asks the schedule again only when a step leaves it, so a training step costs one cosine.
    """

    begin: int
    end: int
    position: CyclePosition
    shape: str
    origin: int
    span: int
    floors: tuple[float, ...]
    amplitudes: tuple[float, ...]

    def position_of(self, t: int) -> CyclePosition:
        """The `CyclePosition` of a step `t` inside this piece."""
        pos = self.position
        return CyclePosition(pos.cycle, pos.start, pos.length, t - pos.start)

    def lrs(self, t: int) -> list[float]:
        """Learning rate of each group at step `t` (which must lie in [begin, end))."""
        shape = self.shape
        if shape == "cosine":
            phase = (1 + math.cos(math.pi * (t - self.origin) / self.span)) / 2
            return [f + a * phase for f, a in zip(self.floors, self.amplitudes)]  # noqa: B905 (equal by construction)
        if shape == "linear":
            x = t - self.origin
            return [f + a * x / self.span for f, a in zip(self.floors, self.amplitudes)]  # noqa: B905
        return list(self.floors)


@dataclass(frozen=True)
class SGDRSchedule:
    """Cosine annealing with warm restarts, as a pure function of the step count.

    Args:
        T_0: Steps in the first cycle (after the initial warmup). Integer >= 1.
        T_mult: Growth factor of cycle lengths, any float >= 1 (1.5 is common).
        eta_min: Floor of the lr, absolute (as in torch), before `lr_decay`: one value, or a tuple of one
            per param group (layer-wise lr decay with groups far apart).
        eta_max: Peak lr for every param group; `None` uses each group's initial lr.
        lr_decay: Per-cycle factor in (0, 1] applied to both peak and floor (`lr_decay**i`).
        warmup_steps: Initial linear warmup steps, before cycle 0 (timm's `warmup_prefix=True`).
        warmup_start_lr: lr at step 0 of the initial warmup.
        restart_warmup_steps: Linear warmup at the start of every cycle after the first, from the
            cycle's floor to its peak; the cosine then spans the rest of the cycle. Must be < `T_0`.
        cycle_limit: After this many cycles the lr holds at the last cycle's floor; `None` = forever.
        last_cycle_length: Length of cycle `cycle_limit - 1`, set by `fit_budget` so that the last
            cycle absorbs rounding and training ends exactly on a cycle end.
        eta_min_ratio: The floor as a fraction in [0, 1) of each group's peak, instead of `eta_min`
            (transformers' `min_lr_rate`).
        restart_warmup_ratio: The restart warmup as a fraction in [0, 1) of each cycle (rounded down), instead
            of `restart_warmup_steps`, so that it grows with the cycles.
        cycles: An explicit list of cycles, `((length, peak_factor), ...)` in steps, instead of the
            `T_0`/`T_mult` rule (`build_schedule(cycles=...)` resolves fractions of a budget). `T_0` must be
            the first length, `T_mult` 1, and `cycle_limit` is the number of cycles.
    """

    # Defaults and ranges come from `schedule_parameters` (the one list of the user-facing parameters).
    T_0: int
    T_mult: float = default("T_mult")
    eta_min: float | tuple[float, ...] = default("eta_min")
    eta_max: float | None = default("eta_max")
    lr_decay: float = default("lr_decay")
    warmup_steps: int = default("warmup_steps")
    warmup_start_lr: float = default("warmup_start_lr")
    restart_warmup_steps: int = default("restart_warmup_steps")
    cycle_limit: int | None = default("cycle_limit")
    last_cycle_length: int | None = None
    cycles: tuple[tuple[int, float], ...] | None = None
    eta_min_ratio: float | None = default("eta_min_ratio")
    restart_warmup_ratio: float | None = default("restart_warmup_ratio")
    # Lazily extended index of the cycle boundaries; a cache, not part of the value.
    _runs: _CycleRuns = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "T_0", check_int("T_0", self.T_0, minimum=1, maximum=MAX_STEPS))
        for name in _CHECKED_FIELDS:
            set_(self, name, PARAMETERS[name].check(getattr(self, name)))
        if self.eta_max is not None and max(self._eta_mins) >= self.eta_max:
            raise ValueError(f"eta_min must be < eta_max; got eta_min={self.eta_min!r} >= eta_max={self.eta_max!r}")
        if self.eta_min_ratio is not None and max(self._eta_mins) > 0:
            raise ValueError(
                f"give eta_min (absolute) or eta_min_ratio (relative to each group's peak), not both; got "
                f"eta_min={self.eta_min!r}, eta_min_ratio={self.eta_min_ratio!r}"
            )
        if self.restart_warmup_ratio is not None and self.restart_warmup_steps:
            raise ValueError(
                f"give restart_warmup_steps or restart_warmup_ratio, not both; got restart_warmup_steps="
                f"{self.restart_warmup_steps!r}, restart_warmup_ratio={self.restart_warmup_ratio!r}"
            )
        if self.cycles is not None:
            self._check_cycles()
        elif self.restart_warmup_steps >= self.T_0:
            raise ValueError(
                f"restart_warmup_steps must be < T_0={self.T_0} (the shortest cycle); got {self.restart_warmup_steps!r}"
            )
        if self.last_cycle_length is not None:
            if self.cycle_limit is None:
                raise ValueError("last_cycle_length needs cycle_limit (it sets the length of the last cycle)")
            set_(
                self,
                "last_cycle_length",
                check_int(
                    "last_cycle_length",
                    self.last_cycle_length,
                    minimum=self.restart_warmup_steps + 1,
                    maximum=MAX_STEPS,
                ),
            )
        set_(self, "_runs", _CycleRuns(self))

    def _check_cycles(self) -> None:
        """Normalise an explicit cycle list and check it against the other fields."""
        cycles = tuple(
            (
                check_int(f"cycles[{i}] length", length, minimum=1, maximum=MAX_STEPS),
                check_float(f"cycles[{i}] peak", peak, minimum=0.0, min_open=True),
            )
            for i, (length, peak) in enumerate(self.cycles)  # type: ignore[union-attr]
        )
        if not cycles:
            raise ValueError("cycles must list at least one cycle")
        if self.T_0 != cycles[0][0] or self.T_mult != 1.0 or self.last_cycle_length is not None:
            raise ValueError("with cycles, T_0 is the first cycle's length, T_mult 1 and last_cycle_length unset")
        if self.cycle_limit not in (None, len(cycles)):
            raise ValueError(
                f"with cycles, cycle_limit is the number of cycles ({len(cycles)}); got {self.cycle_limit}"
            )
        shortest = min((length for length, _ in cycles[1:]), default=None)
        if shortest is not None and self.restart_warmup_steps >= shortest:
            raise ValueError(
                f"restart_warmup_steps must be < {shortest} (the shortest cycle after the first); "
                f"got {self.restart_warmup_steps!r}"
            )
        object.__setattr__(self, "cycles", cycles)
        object.__setattr__(self, "cycle_limit", len(cycles))

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def fit_budget(
        cls,
        num_training_steps: int,
        num_cycles: int = DEFAULT_NUM_CYCLES,
        *,
        T_mult: float = 1.0,
        warmup_steps: int = 0,
        restart_warmup_steps: int = 0,
        **kwargs: Any,
    ) -> SGDRSchedule:
        """Choose `T_0` so that `num_cycles` cycles end exactly at `num_training_steps`.

        The first `num_cycles - 1` cycles follow the usual rule with the largest integer `T_0` that
        leaves the last cycle at least as long as the rule would make it; the last cycle absorbs the
        rounding. After it the lr holds at its floor (`cycle_limit = num_cycles`).
        """
        num_training_steps = NUM_TRAINING_STEPS.check(num_training_steps)
        num_cycles = PARAMETERS["num_cycles"].check(num_cycles)
        T_mult = PARAMETERS["T_mult"].check(T_mult)
        warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0, maximum=num_training_steps - 1)
        restart_warmup_steps = PARAMETERS["restart_warmup_steps"].check(restart_warmup_steps)
        if "cycle_limit" in kwargs or "last_cycle_length" in kwargs or "T_0" in kwargs:
            raise ValueError("T_0, cycle_limit and last_cycle_length are chosen by the budget fit; do not pass them")
        budget = num_training_steps - warmup_steps
        min_length = restart_warmup_steps + 1
        if num_cycles * min_length > budget:
            raise ValueError(
                f"num_cycles must be <= {budget // min_length} for a budget of {budget} steps after warmup"
                f" (restart_warmup_steps={restart_warmup_steps}); got {num_cycles!r}"
            )
        if T_mult > 1.0 and (num_cycles - 2) * math.log(T_mult) > math.log(MAX_STEPS) + 1.0:
            # the cycle before the last alone outgrows any budget: said before a power overflows or a sum runs long
            most = 2 + math.floor((math.log(budget) + 1.0) / math.log(T_mult))
            raise ValueError(
                f"num_cycles={num_cycles} with T_mult={T_mult:g} needs num_training_steps >= {MAX_STEPS:g}, more than "
                f"the largest budget accepted; for {budget} steps use at most about {most} cycles or a smaller T_mult"
            )
        geometric = num_cycles if T_mult == 1.0 else (T_mult**num_cycles - 1.0) / (T_mult - 1.0)
        T_0 = _largest_fitting_T_0(
            budget, num_cycles, T_mult, min_length, max(min_length, math.ceil(budget / geometric))
        )
        before_last = _rule_start(T_0, T_mult, num_cycles - 1)
        last = budget - before_last
        if last < min_length:
            shortest = before_last + min_length + warmup_steps
            raise ValueError(
                f"num_cycles={num_cycles} with T_mult={T_mult:g} needs num_training_steps >= {shortest}; "
                f"got {num_training_steps}"
            )
        return cls(
            T_0=T_0,
            T_mult=T_mult,
            warmup_steps=warmup_steps,
            restart_warmup_steps=restart_warmup_steps,
            cycle_limit=num_cycles,
            last_cycle_length=last,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        """The hyper-parameters as plain Python values (JSON- and `weights_only`-safe)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        for name in _NEWER_FIELDS:
            if data[name] is None:
                del data[name]  # older readers know no such key
        if self.cycles is not None:
            data["cycles"] = [[length, peak] for length, peak in self.cycles]
        if isinstance(self.eta_min, tuple):
            data["eta_min"] = list(self.eta_min)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SGDRSchedule:
        """Inverse of `to_dict`; unknown keys are an error, naming them."""
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SGDR schedule parameter(s) {unknown}; accepted: {sorted(known)}")
        if data.get("cycles") is not None:
            data = {**data, "cycles": tuple((length, peak) for length, peak in data["cycles"])}
        if isinstance(data.get("eta_min"), list):
            data = {**data, "eta_min": tuple(data["eta_min"])}
        return cls(**data)

    # ------------------------------------------------------------------ cycle arithmetic
    def cycle_length(self, cycle: int) -> int:
        """Number of steps in cycle `cycle` (0-based)."""
        if self.cycle_limit is not None and cycle >= self.cycle_limit:
            raise ValueError(f"cycle must be < cycle_limit={self.cycle_limit}; got {cycle}")
        if self.cycles is not None:
            return self.cycles[cycle][0]
        if self.last_cycle_length is not None and cycle == self.cycle_limit - 1:  # type: ignore[operator]
            return self.last_cycle_length
        return _rule_length(self.T_0, self.T_mult, cycle)

    def cycle_start(self, cycle: int) -> int:
        """Absolute step at which cycle `cycle` begins (`warmup_steps + B_cycle`)."""
        cycle = check_int("cycle", cycle, minimum=0)
        if self.cycle_limit is not None and cycle > self.cycle_limit:
            raise ValueError(f"cycle must be <= cycle_limit={self.cycle_limit}; got {cycle}")
        return self.warmup_steps + self._runs.start_of(cycle)

    def _locate(self, s: int) -> tuple[int, int, int | None]:
        """(cycle, start B_i, length T_i) for post-warmup offset `s >= 0`; length None once finished."""
        return self._runs.locate(s)

    def position(self, t: int) -> CyclePosition:
        """Cycle, cycle start, cycle length and offset of step `t` (O(1) for T_mult=1, else O(log t))."""
        if not 0 <= t <= MAX_STEP:
            raise ValueError(f"t must be an integer in [0, 2**63 - 1]; got {t!r}")
        w = self.warmup_steps
        if t < w:
            return CyclePosition(0, w, self.cycle_length(0), t - w)
        cycle, start, length = self._locate(t - w)
        return CyclePosition(cycle, w + start, length, t - w - start)

    def is_cycle_end(self, t: int) -> bool:
        """True when step `t` is the first step after a cycle ended (`t == W + B_{i+1}`)."""
        pos = self.position(t)
        return t > 0 and pos.t_cur == 0 and pos.cycle >= 1

    def is_restart(self, t: int) -> bool:
        """True when a new cycle (not the hold after the last one) begins at step `t`."""
        return self.is_cycle_end(t) and self.position(t).length is not None

    def steps_to_cycle_end(self, t: int) -> int | None:
        """Steps from `t` until the current cycle ends; `None` once the schedule has finished."""
        pos = self.position(t)
        return None if pos.length is None else pos.start + pos.length - t

    def steps_to_next_restart(self, t: int) -> int | None:
        """Steps from `t` until the next restart; `None` when no restart remains."""
        pos = self.position(t)
        if pos.length is None or (self.cycle_limit is not None and pos.cycle + 1 >= self.cycle_limit):
            return None
        return pos.start + pos.length - t

    def cycle_ends(self, up_to: int) -> list[int]:
        """Absolute steps `t <= up_to` at which a cycle ends (the snapshot points), in order."""
        ends = []
        cycle = 1
        while self.cycle_limit is None or cycle <= self.cycle_limit:
            end = self.cycle_start(cycle)
            if end > up_to:
                break
            ends.append(end)
            cycle += 1
        return ends

    def count_cycle_ends(self, up_to: int) -> int:
        """How many steps `t <= up_to` end a cycle (`len(cycle_ends(up_to))` in one O(log) lookup)."""
        if up_to < self.warmup_steps:
            return 0
        return self.position(up_to).cycle

    def cycle_ends_text(self, up_to: int, edge: int = 10) -> str:
        """`cycle_ends(up_to)` for people: the whole list, or the first and last `edge` ends and the count."""
        count = self.count_cycle_ends(up_to)
        if count <= 2 * edge:
            return str(self.cycle_ends(up_to))
        first = ", ".join(str(self.cycle_start(cycle)) for cycle in range(1, edge + 1))
        last = ", ".join(str(self.cycle_start(cycle)) for cycle in range(count - edge + 1, count + 1))
        return f"[{first}, ... {count - 2 * edge} more ..., {last}] ({count} in all)"

    def count_restarts(self, up_to: int) -> int:
        """How many steps `t <= up_to` restart the lr (`len(restarts(up_to))` in one O(log) lookup)."""
        ends = self.count_cycle_ends(up_to)
        return ends - 1 if self.cycle_limit is not None and ends == self.cycle_limit else ends

    def restarts(self, up_to: int) -> list[int]:
        """Absolute steps `t <= up_to` at which a new cycle restarts the lr."""
        ends = self.cycle_ends(up_to)
        if self.cycle_limit is not None and len(ends) == self.cycle_limit:
            ends.pop()
        return ends

    # ------------------------------------------------------------------ learning rates
    def peak_factor(self, cycle: int) -> float:
        """The factor on the groups' peak in cycle `cycle` (1 unless a cycle list says otherwise)."""
        return 1.0 if self.cycles is None else self.cycles[min(cycle, len(self.cycles) - 1)][1]

    @property
    def _eta_mins(self) -> tuple[float, ...]:
        return self.eta_min if isinstance(self.eta_min, tuple) else (self.eta_min,)

    def restart_warmup(self, length: int) -> int:
        """Steps of linear warmup at the start of a cycle of `length` steps after the first."""
        if self.restart_warmup_ratio is None:
            return self.restart_warmup_steps
        return math.floor(self.restart_warmup_ratio * length)

    def floors(self, peaks: Sequence[float], first_group: int = 0) -> tuple[float, ...]:
        """The undecayed floor of each group whose peak is in `peaks` (groups `first_group`, `first_group + 1`, ...)."""
        if self.eta_min_ratio is not None:
            return tuple(self.eta_min_ratio * peak for peak in peaks)
        if not isinstance(self.eta_min, tuple):
            return (self.eta_min,) * len(peaks)
        floors = self.eta_min[first_group : first_group + len(peaks)]
        if len(floors) < len(peaks):
            raise ValueError(
                f"eta_min lists {len(self.eta_min)} floors, one per param group; there is no floor for param group "
                f"{first_group + len(floors)}"
            )
        return floors

    def check_floors(self, max_lrs: Sequence[float]) -> None:
        """Refuse a floor at or above a group's lowest peak (and a per-group `eta_min` of another length)."""
        if isinstance(self.eta_min, tuple) and len(self.eta_min) != len(max_lrs):
            raise ValueError(
                f"eta_min lists {len(self.eta_min)} floors, one per param group, but there are {len(max_lrs)} param "
                "groups"
            )
        factor = min((peak for _, peak in self.cycles), default=1.0) if self.cycles else 1.0
        peaks = [self.eta_max if self.eta_max is not None else float(m) for m in max_lrs]
        if self.eta_min_ratio is not None:
            if not self.eta_min_ratio < factor:
                raise ValueError(
                    f"eta_min_ratio must be < the lowest cycle peak factor {factor:g}; got {self.eta_min_ratio!r}"
                )
            return
        lowest = "" if factor == 1.0 else f" times the lowest cycle peak factor {factor:g}"
        for index, (peak, floor) in enumerate(zip(peaks, self.floors(peaks), strict=True)):
            if not peak * factor > floor:
                raise ValueError(
                    f"eta_min must be < the initial lr of every param group{lowest}; got eta_min={floor!r} >= "
                    f"lr={peak!r} of param group {index} (or pass eta_max)"
                )

    def cycle_bounds(self, cycle: int, max_lr: float, group: int = 0) -> tuple[float, float]:
        """(peak, floor) of cycle `cycle` for group `group`, whose undecayed peak is `max_lr`."""
        decay = self.lr_decay**cycle
        peak = self.eta_max if self.eta_max is not None else max_lr
        return decay * peak * self.peak_factor(cycle), decay * self.floors([peak], group)[0]

    def piece_at(self, pos: CyclePosition, max_lrs: Sequence[float], first_group: int = 0) -> SchedulePiece:
        """The smooth piece of the schedule that contains `pos`, bound to the groups' peaks `max_lrs`
        (of groups `first_group`, `first_group + 1`, ...: a per-group `eta_min` is read from there).

        `AdaptiveSGDR` calls this (through `lrs_at`) with positions from its own realised cycle lengths.
        """
        peaks = [self.eta_max if self.eta_max is not None else float(m) for m in max_lrs]
        if pos.t_cur < 0:
            start = self.warmup_start_lr
            amplitudes = tuple(peak - start for peak in peaks)
            return SchedulePiece(0, pos.start, pos, "linear", 0, pos.start, (start,) * len(peaks), amplitudes)
        cycle = pos.cycle if pos.length is not None else pos.cycle - 1
        decay = self.lr_decay**cycle if self.lr_decay != 1.0 else 1.0
        floors = tuple(decay * floor for floor in self.floors(peaks, first_group))
        factor = decay * self.peak_factor(cycle)
        amplitudes = tuple(factor * peak - floor for peak, floor in zip(peaks, floors, strict=True))
        if pos.length is None:
            return SchedulePiece(pos.start, MAX_STEP + 1, pos, "constant", pos.start, 1, floors, amplitudes)
        end = pos.start + pos.length
        ramp = self.restart_warmup(pos.length) if pos.cycle > 0 else 0
        if pos.t_cur < ramp:
            return SchedulePiece(pos.start, pos.start + ramp, pos, "linear", pos.start, ramp, floors, amplitudes)
        begin = pos.start + ramp
        return SchedulePiece(begin, end, pos, "cosine", begin, end - begin, floors, amplitudes)

    def lrs_at(self, pos: CyclePosition, max_lrs: Sequence[float]) -> list[float]:
        """Learning rates at a position, one per param group (`max_lrs`: the groups' initial lrs)."""
        return self.piece_at(pos, max_lrs).lrs(pos.start + pos.t_cur)

    def lrs(self, t: int, max_lrs: Sequence[float]) -> list[float]:
        """Learning rate at step `t` for each param group (`max_lrs`: the groups' initial lrs)."""
        return self.lrs_at(self.position(t), max_lrs)

    def lr(self, t: int, max_lr: float | None = None, group: int = 0) -> float:
        """Learning rate at step `t` for group `group` whose initial lr is `max_lr` (or `eta_max`)."""
        if max_lr is None:
            if self.eta_max is None:
                raise ValueError("max_lr is required when eta_max is None")
            max_lr = self.eta_max
        return self.piece_at(self.position(t), [max_lr], group).lrs(t)[0]

    def multiplier(self, t: int, base_lr: float = 1.0) -> float:
        """`lr(t) / base_lr`: the factor a `LambdaLR` would apply to a group whose lr is `base_lr`."""
        return self.lr(t, base_lr) / base_lr

    # ------------------------------------------------------------------ inspection
    def count_cycles(self, num_training_steps: int) -> int:
        """How many cycles start before `num_training_steps` (one O(log) lookup)."""
        if num_training_steps <= 0:
            return 0
        pos = self.position(num_training_steps - 1)
        return pos.cycle + (pos.length is not None)

    def describe(
        self, num_training_steps: int, max_lr: float = 1.0, group: int = 0, limit: int | None = None
    ) -> list[CycleInfo]:
        """The cycles that start before `num_training_steps`, with their extent and the lr range of group
        `group` (whose initial lr is `max_lr`; a per-group `eta_min` is read from there). With `limit`, at most
        that many rows: the first and the last cycles (a summary, whatever the number of cycles)."""
        count = self.count_cycles(num_training_steps)
        cycles: Sequence[int] = range(count)
        if limit is not None and count > limit:
            cycles = [*range(limit - limit // 2), *range(count - limit // 2, count)]
        rows = []
        for cycle in cycles:
            start, length = self.cycle_start(cycle), self.cycle_length(cycle)
            peak = self.cycle_bounds(cycle, max_lr, group)[0]
            end = start + length
            rows.append(CycleInfo(cycle, start, end, length, peak, self.lr(end - 1, max_lr, group)))
        return rows

    def budget_warnings(self, num_training_steps: int, max_lrs: Sequence[float] = ()) -> list[str]:
        """The pitfalls of a known budget: ending mid-cycle, < 2 restarts, a flat lr range."""
        found = []
        end = self.position(num_training_steps)
        if end.length is not None and end.t_cur != 0:
            into = f"{end.fraction:.0%}" if end.fraction >= 0.01 else f"{end.fraction:.1%}"
            after = end.start + end.length
            if end.cycle == 0:
                found.append(
                    f"no cycle ends within the budget: step {num_training_steps} is {into} into the first cycle, "
                    f"which ends at step {after}, so no snapshot is written and the lr never reaches its floor. Set "
                    "num_cycles instead of T_0 to fit cycles into the budget, or shorten T_0."
                )
            else:
                found.append(
                    f"training ends mid-cycle: step {num_training_steps} is {into} into cycle {end.cycle} (the "
                    f"nearest cycle ends: {end.start} or {after}); the steps after {end.start} get no snapshot and "
                    "the final model misses the cycle's low-lr end. Set num_cycles instead of T_0 to fit the budget, "
                    "or change the number of steps."
                )
        restarts = self.count_restarts(num_training_steps - 1)
        if restarts < 2:
            found.append(
                f"only {restarts} restart(s) in {num_training_steps} steps: warm restarts need several to matter, "
                "and a snapshot ensemble one cycle per member"
            )
        peaks = [self.eta_max if self.eta_max is not None else float(m) for m in max_lrs]
        if not peaks and self.eta_max is not None:
            peaks = [self.eta_max]
        floors = self.floors(peaks[: len(self._eta_mins)] if isinstance(self.eta_min, tuple) else peaks)
        if any(floor > 0 and peak / floor < 10 for peak, floor in zip(peaks, floors, strict=False)):
            shown = f"{floors[0]:g}" if len(set(floors)) == 1 else str([f"{f:g}" for f in floors])
            found.append(
                f"eta_max / eta_min < 10 (eta_min={shown}, peaks={[f'{p:g}' for p in peaks]}): "
                "the restarts barely change the lr"
            )
        return found


#: One-cycle runs `_CycleRuns` appends at a time while the cycles grow (bounds the work past the step asked for).
_GROWING_BATCH = 4096
#: Up to this many cycles the budget fit sums the rule lengths one by one (faster than indexing them).
_DIRECT_SUM = 200_000
#: Fields that `to_dict` leaves out when unset, so that a manifest without them still reads in older versions.
_NEWER_FIELDS = ("cycles", "eta_min_ratio", "restart_warmup_ratio")
#: The `SGDRSchedule` fields that `__post_init__` checks by their declaration in `schedule_parameters` (`T_0`
#: is required there, not optional; a cycle list is checked on its own).
_CHECKED_FIELDS = tuple(
    f.name for f in fields(SGDRSchedule) if f.name in SHAPE_PARAMETERS and f.name not in ("T_0", "cycles")
)


class _CycleRuns:
    """Cycle boundaries as runs of equal-length cycles: `(first cycle, its start B, length)`.

    Within a run `B_i = B_first + (i - first) * length`, so locating a step is a bisection over runs,
    and the index grows with the number of distinct cycle lengths, not with the number of cycles:
    T_mult = 1 is a single run, and a T_mult barely above 1 (long stretches of equal lengths) stays
    small. Cycle `cycle_limit - 1` may have its own length (budget fit); a final run of length 0
    marks the end of the last cycle.
    """

    def __init__(self, schedule: SGDRSchedule) -> None:
        self.schedule = schedule
        self.cycles = [0]
        self.starts = [0]
        self.lengths = [schedule.cycle_length(0)]
        self._log_T_0, self._log_T_mult = math.log(schedule.T_0), math.log(schedule.T_mult)
        # T_mult = 1 without a cycle limit: the first run never ends.
        self.complete = schedule.T_mult == 1.0 and schedule.cycle_limit is None
        if schedule.cycles is not None:  # a cycle list: every run known at once, the last of length 0
            for cycle, (length, _) in enumerate(schedule.cycles[1:], start=1):
                self.cycles.append(cycle)
                self.starts.append(self.starts[-1] + self.lengths[-1])
                self.lengths.append(length)
            self.cycles.append(len(schedule.cycles))
            self.starts.append(self.starts[-1] + self.lengths[-1])
            self.lengths.append(0)
            self.complete = True

    def _next_run(self, step: int = MAX_STEP, cycle: int = MAX_STEP) -> None:
        """Index the next run; batches of growing cycles stop past offset `step` or cycle `cycle` (what is asked)."""
        sched, c, L = self.schedule, self.cycles[-1], self.lengths[-1]
        limit = sched.cycle_limit
        overridden = limit is not None and sched.last_cycle_length is not None
        if overridden and c == limit - 1:
            nxt = limit
        elif sched.T_mult == 1.0:
            nxt = limit  # T_mult = 1 runs to the limit (there is one, or the index would be complete)
        elif _rule_length(sched.T_0, sched.T_mult, c + 1) > L and self._append_growing(c + 1, step, cycle):
            return
        else:
            # First cycle whose rule length exceeds L: T_0 * T_mult**i >= L + 0.5; the log only guesses,
            # the integer rule decides.
            nxt = max(c + 1, math.ceil((math.log(L + 0.5) - self._log_T_0) / self._log_T_mult))
            while nxt > c + 1 and _rule_length(sched.T_0, sched.T_mult, nxt - 1) > L:
                nxt -= 1
            while _rule_length(sched.T_0, sched.T_mult, nxt) <= L:
                nxt += 1
        if limit is not None:
            nxt = min(nxt, limit - 1 if overridden and c < limit - 1 else limit)
        start = self.starts[-1] + (nxt - c) * L
        self.cycles.append(nxt)
        self.starts.append(start)
        self.lengths.append(0 if nxt == limit else sched.cycle_length(nxt))

    def _append_growing(self, first: int, step: int, last: int) -> bool:
        """Append one-cycle runs from cycle `first` on while each cycle is longer than the one before (every cycle
        is, once `T_0 * T_mult**i * (T_mult - 1) > 1`), up to `_GROWING_BATCH` of them, before a cycle no step
        reaches, or before the cycle limit's own cycles, and no further than the run holding offset `step` and
        cycle `last`: a tight loop instead of a search per cycle. The last run of length `L` holds one cycle (the
        rule length of `first` exceeds `L`). Returns whether it appended any."""
        sched = self.schedule
        T_0, T_mult, limit = sched.T_0, sched.T_mult, sched.cycle_limit
        stop = min(first + _GROWING_BATCH, last + 1)
        if limit is not None:
            stop = min(stop, limit - 1 if sched.last_cycle_length is not None else limit)
        cycles, starts, lengths = self.cycles, self.starts, self.lengths
        cycle, previous = first, lengths[-1]
        while cycle < stop and starts[-1] + previous <= step:
            length = _rule_length(T_0, T_mult, cycle)
            if length <= previous:
                break
            cycles.append(cycle)
            starts.append(starts[-1] + previous)
            lengths.append(length)
            cycle, previous = cycle + 1, length
        return cycle > first

    def locate(self, s: int) -> tuple[int, int, int | None]:
        """(cycle, start, length) of offset `s` after the warmup; length None after the last cycle."""
        while not self.complete and self.lengths[-1] and self.starts[-1] <= s:
            self._next_run(step=s)
        k = bisect_right(self.starts, s) - 1
        first, start, length = self.cycles[k], self.starts[k], self.lengths[k]
        if not length:
            return first, start, None
        cycle = first + (s - start) // length
        return cycle, start + (cycle - first) * length, length

    def start_of(self, cycle: int) -> int:
        """B_cycle (offset after the warmup)."""
        while not self.complete and self.lengths[-1] and self.cycles[-1] <= cycle:
            self._next_run(cycle=cycle)
        k = bisect_right(self.cycles, cycle) - 1
        return self.starts[k] + (cycle - self.cycles[k]) * self.lengths[k]


def parse_cycles(cycles: Any) -> list[tuple[float, float]]:
    """A user's cycle list as `[(length, peak factor), ...]`, checked; lengths stay as given (steps or fractions).

    Accepted forms, for every entry: a length alone (`100`, `0.4`), a pair `[length, peak]`, a mapping
    `{"length": ..., "peak": ...}` (peak default 1), or, as one string (a command line), JSON or
    `"0.4:1,0.15:0.5"`. A length is steps (an integer >= 1) or a fraction of the budget after the
    warmup (a float in (0, 1]); a peak is a factor (> 0) on each param group's peak lr.
    """
    if isinstance(cycles, str):
        text = cycles.strip()
        if text.startswith("["):
            import json

            try:
                cycles = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"cycles is not valid JSON ({error}); e.g. [[0.4, 1], [0.15, 0.5]]") from None
        else:
            cycles = [part.split(":") for part in text.replace(" ", ",").split(",") if part]
    if not isinstance(cycles, Sequence) or isinstance(cycles, (str, bytes)) or not cycles:
        raise ValueError(f"cycles must be a non-empty list of cycles, e.g. [[0.4, 1], [0.15, 0.5]]; got {cycles!r}")
    parsed = []
    for index, entry in enumerate(cycles):
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"length", "peak"})
            if unknown or "length" not in entry:
                raise ValueError(f"cycles[{index}] takes the keys length (required) and peak; got {sorted(entry)}")
            length, peak = entry["length"], entry.get("peak", 1.0)
        elif isinstance(entry, (list, tuple)):
            if len(entry) not in (1, 2):
                raise ValueError(f"cycles[{index}] must be [length] or [length, peak]; got {entry!r}")
            length, peak = entry[0], entry[1] if len(entry) == 2 else 1.0
        else:
            length, peak = entry, 1.0
        number = check_float(f"cycles[{index}] length", length, minimum=0.0, min_open=True)
        if number > 1.0 and number != math.floor(number):
            raise ValueError(
                f"cycles[{index}] length must be steps (an integer >= 1) or a fraction of the budget in (0, 1]; "
                f"got {length!r}"
            )
        peak = check_float(f"cycles[{index}] peak", peak, minimum=0.0, min_open=True)
        parsed.append((int(number) if number > 1.0 or isinstance(length, int) else number, peak))
    return parsed


def resolve_cycles(cycles: Any, num_training_steps: int | None, warmup_steps: int = 0) -> tuple[tuple[int, float], ...]:
    """`parse_cycles`, with fractions turned into steps of the budget after the warmup (the last cycle
    absorbs rounding, so training ends exactly on the last cycle's end)."""
    parsed = parse_cycles(cycles)
    fractions = [isinstance(length, float) for length, _ in parsed]
    if not any(fractions):
        return tuple((int(length), peak) for length, peak in parsed)
    if not all(fractions):
        raise ValueError("cycles must give every length in steps or every length as a fraction of the budget, not both")
    total = sum(length for length, _ in parsed)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"cycle lengths given as fractions of the budget must sum to 1; they sum to {total:g}")
    if num_training_steps is None:
        raise ValueError("cycle lengths given as fractions need num_training_steps (the budget to share)")
    budget = NUM_TRAINING_STEPS.check(num_training_steps) - warmup_steps
    lengths = [max(1, math.floor(length * budget + 0.5)) for length, _ in parsed[:-1]]
    last = budget - sum(lengths)
    if last < 1:
        raise ValueError(f"{len(parsed)} cycles do not fit a budget of {budget} steps after the warmup")
    return tuple(zip([*lengths, last], [peak for _, peak in parsed], strict=True))


def _rule_length(T_0: int, T_mult: float, cycle: int) -> int:
    """`T_i = max(1, floor(T_0 * T_mult**i + 0.5))`, exact integer for integer T_mult."""
    if T_mult == 1.0:
        return T_0
    try:
        return max(1, math.floor(T_0 * T_mult**cycle + 0.5))
    except OverflowError:
        raise ValueError(
            f"cycle {cycle} of T_0={T_0}, T_mult={T_mult:g} is longer than any float (and than any training run)"
        ) from None


def _rule_start(T_0: int, T_mult: float, cycle: int) -> int:
    """`B_cycle` of the rule without a cycle limit: the sum of the first `cycle` rule lengths (summed directly for
    up to `_DIRECT_SUM` cycles, else by runs of equal lengths, which are few when the cycles are that many)."""
    if T_mult == 1.0:
        return T_0 * cycle
    if cycle <= _DIRECT_SUM:
        return sum(max(1, math.floor(T_0 * T_mult**i + 0.5)) for i in range(cycle))
    return SGDRSchedule(T_0=T_0, T_mult=T_mult)._runs.start_of(cycle)


def _largest_fitting_T_0(budget: int, num_cycles: int, T_mult: float, low: int, guess: int) -> int:
    """The largest `T_0` in [low, guess] whose first `num_cycles - 1` rule cycles leave the last one at least its rule
    length (`low` when none does). The condition is monotone in `T_0`: gallop down from `guess`, then bisect."""

    def fits(T_0: int) -> bool:
        last = num_cycles - 1
        return budget - _rule_start(T_0, T_mult, last) >= _rule_length(T_0, T_mult, last)

    if T_mult == 1.0:  # equal cycles: the closed form
        return max(low, min(guess, budget // num_cycles))
    if fits(guess) or guess == low:
        return guess
    # Rounding adds at most 1/2 a cycle: T_0 * G + num_cycles / 2 <= budget fits (G = sum of T_mult**i), so the
    # answer is usually within a step or two of this bound (a margin covers the float error of G).
    geometric = (T_mult**num_cycles - 1.0) / (T_mult - 1.0)
    lo = max(low, math.floor((budget - num_cycles) / geometric) - 1)
    if not fits(lo):
        high, step = guess, 1  # fits(high) is False: gallop down
        while high - step > low and not fits(high - step):
            high, step = high - step, step * 2
        lo = max(low, high - step)
        if lo == low and not fits(low):
            return low
    high = guess
    while high - lo > 1:  # fits(lo), not fits(high)
        middle = (lo + high) // 2
        lo, high = (middle, high) if fits(middle) else (lo, middle)
    return lo


class SGDRWarning(UserWarning):
    """A schedule that works but falls into one of SGDR's common pitfalls (see `budget_warnings`)."""


def build_schedule(
    T_0: int | None = None,
    *,
    num_cycles: int | None = None,
    num_training_steps: int | None = None,
    cycles: Any = None,
    **params: Any,
) -> SGDRSchedule:
    """Make a schedule from user-facing options: a fixed `T_0`, a budget fit, or a cycle list.

    - `T_0` given: cycles follow the rule; `num_cycles` must not be given too.
    - `num_cycles` given: fit the budget (`num_training_steps` required) so training ends on a cycle end.
    - `cycles` given (see `parse_cycles`): exactly those cycles; exclusive with `T_0`, `num_cycles`,
      `T_mult` and `cycle_limit`.
    - none of them: fit the budget with `DEFAULT_NUM_CYCLES` cycles (fewer when the budget is too small).

    `params` are the other shape parameters of `hf_sgdr.schedule_parameters` (`T_mult`, `eta_min`, ...);
    an unknown name is refused with the closest one; `None` for a parameter that may be `None` means "not given".
    """
    check_names(params, SHAPE_PARAMETERS, "build_schedule")
    if num_training_steps is not None:
        num_training_steps = NUM_TRAINING_STEPS.check(num_training_steps)
    params = {name: value for name, value in params.items() if value is not None or not PARAMETERS[name].nullable}
    if cycles is not None:
        clashing = {"T_0": T_0, "num_cycles": num_cycles, "cycle_limit": params.get("cycle_limit")}
        given = [f"{name}={value!r}" for name, value in clashing.items() if value is not None]
        if params.get("T_mult", 1.0) not in (1, 1.0, "1", None):
            given.append(f"T_mult={params['T_mult']!r}")
        if given:
            raise ValueError(f"cycles lists every cycle; do not pass {', '.join(given)} with it")
        params = {k: v for k, v in params.items() if k not in ("T_mult", "cycle_limit")}
        resolved = resolve_cycles(
            cycles, num_training_steps, check_int("warmup_steps", params.get("warmup_steps", 0), minimum=0)
        )
        return SGDRSchedule(T_0=resolved[0][0], cycles=resolved, **params)
    if T_0 is not None and num_cycles is not None:
        raise ValueError(
            f"pass either T_0 (fixed first cycle) or num_cycles (fit the budget), not both; got T_0={T_0!r}, "
            f"num_cycles={num_cycles!r}"
        )
    if T_0 is not None:
        return SGDRSchedule(T_0=T_0, **params)
    if num_training_steps is None:
        what = "num_cycles" if num_cycles is not None else "a schedule without T_0"
        raise ValueError(f"{what} needs num_training_steps (the budget to fit); or pass T_0")
    if num_cycles is not None:
        return SGDRSchedule.fit_budget(num_training_steps, num_cycles, **params)
    cycles = DEFAULT_NUM_CYCLES
    while True:
        try:
            return SGDRSchedule.fit_budget(num_training_steps, cycles, **params)
        except ValueError:
            if cycles == 1:
                raise
            cycles -= 1
