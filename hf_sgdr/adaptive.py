"""`AdaptiveSGDR`: SGDR whose current cycle grows when validation stops improving.

When the monitored metric has not improved for `patience` consecutive evaluations within the current
cycle, that cycle's length is multiplied by `extension_factor`, so the optimizer gets longer at a
low lr before the next restart. Every later cycle keeps its nominal length and moves back by the
same number of steps. The lr formula, the events and the optimizer reset all come from
`SGDRScheduler` / `SGDRSchedule`; this class only replaces where the cycle boundaries fall
(`_position_at`) and decides when to move them (`observe`).

The state is the current cycle (index, start, realised length), the steps added by extensions so
far, the patience counters, the best value and a short history of recent cycles: its size does not
grow with the number of steps or cycles, and it is made of plain Python values so that
`torch.load(..., weights_only=True)` reads it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from .schedule import CyclePosition, SGDRSchedule, SGDRWarning
from .schedule_parameters import SHAPE_PARAMETERS, check_names
from .scheduler import SGDRScheduler
from .validation import check_bool, check_float, check_int

logger = logging.getLogger(__name__)

#: Completed cycles kept in `recent_cycles` (and in the state) — a bound, not a full history.
HISTORY_LENGTH = 8
#: The schedule parameters an adaptive schedule takes by name: all but the first cycle (`initial_T_0`,
#: `T_mult`), what would fix the cycles in advance (a budget fit, a cycle list) and a restart warmup that
#: scales with the cycle (an extension would move its end after it was passed).
ADAPTIVE_PARAMETERS = tuple(
    name for name in SHAPE_PARAMETERS if name not in ("T_0", "T_mult", "num_cycles", "cycles", "restart_warmup_ratio")
)


class RealisedCycle(NamedTuple):
    """A completed cycle as it really ran: absolute `start` step, realised `length`, `extensions` made."""

    cycle: int
    start: int
    length: int
    extensions: int


class AdaptiveSGDR(SGDRScheduler):
    """SGDR that lengthens the current cycle when the monitored metric plateaus.

    Rule: an evaluation improves when it beats the best value seen in the current cycle by more than
    `min_delta` (the first evaluation of a cycle sets the best; a non-finite value never improves).
    After `patience` consecutive evaluations without improvement, the current cycle's length `L`
    becomes `max(L + 1, floor(L * extension_factor + 0.5))`, capped at `max_cycle_length`, at most
    `max_extensions_per_cycle` times per cycle; the counter then starts again. At each restart the
    counters and the best value reset, since the lr jump makes the previous cycle's values
    incomparable. The bound: a cycle is extended at most `max_extensions_per_cycle` times (each
    extension adds at most `L * (extension_factor - 1) + 1` steps; with the defaults a cycle ends up
    at most about 2.25 times its nominal length), and never beyond `max_cycle_length` (a nominal cycle
    already longer than that is left as it is).

    The cosine of the current cycle is stretched over its realised length. `position()` and the
    events show the new length as soon as `observe` extends; the lr changes from the next `step()`
    (the lr already applied is left alone, as in any torch scheduler): it moves up to the longer
    cycle's value at that point, then anneals to the floor at the new end.

    Evaluations are taken to measure the weights after `last_epoch` steps. One that arrives exactly
    at a cycle end (`is_at_cycle_end()`) measures the cycle that just ended: that cycle is over and
    is not extended, and the evaluation does not count for the new cycle either. Evaluations during
    the initial warmup count for cycle 0; after the last cycle (`cycle_limit`) nothing is extended.

    Args:
        optimizer: The optimizer (plain or wrapped by Accelerate).
        initial_T_0: Nominal steps in the first cycle (after the initial warmup). Integer >= 1.
        T_mult: Nominal growth factor of cycle lengths (see `SGDRSchedule`).
        patience: Evaluations without improvement, within a cycle, that trigger an extension.
        extension_factor: Factor (> 1) applied to the current cycle's length at an extension.
        max_extensions_per_cycle: At most this many extensions per cycle (0 never extends).
        max_cycle_length: No extension makes a cycle longer than this many steps; `None`: no cap
            beyond `max_extensions_per_cycle`.
        monitor: The metric to watch; when it is missing from the metrics, `eval_<monitor>` is tried
            (as transformers does for `metric_for_best_model`). `None` (default): the Trainer's
            `metric_for_best_model` when `SGDRCallback` drives it, else `"eval_loss"`.
        greater_is_better: Whether a larger metric is better; `None` infers it like transformers:
            `not monitor.endswith("loss")` (the Trainer's `greater_is_better` when it sets the monitor).
        min_delta: An improvement must beat the best value by more than this (absolute).
        reset_optimizer_state, last_epoch: as for `SGDRScheduler`.
        **schedule_params: `eta_min`, `eta_min_ratio`, `eta_max`, `lr_decay`, `warmup_steps`,
            `warmup_start_lr`, `restart_warmup_steps`, `cycle_limit`: as for `SGDRScheduler` (no budget fit, no
            cycle list and no `restart_warmup_ratio`: extensions would break them).

    Besides `SGDRScheduler`'s event API (`position()`, `current_cycle`, `is_at_cycle_end()`, ...,
    all at the realised lengths; `schedule` keeps the nominal hyper-parameters), it exposes
    `cycle_extensions` (in the current cycle), `num_extensions` and `extension_steps` (in total: every
    later boundary is that many steps after its nominal place) and `recent_cycles`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        initial_T_0: int,
        T_mult: float = 1.0,
        patience: int = 3,
        extension_factor: float = 1.5,
        *,
        max_extensions_per_cycle: int = 2,
        max_cycle_length: int | None = None,
        monitor: str | None = None,
        greater_is_better: bool | None = None,
        min_delta: float = 0.0,
        reset_optimizer_state: bool = False,
        last_epoch: int = -1,
        **schedule_params: Any,
    ) -> None:
        initial_T_0 = check_int("initial_T_0", initial_T_0, minimum=1)
        check_names(schedule_params, ADAPTIVE_PARAMETERS, "AdaptiveSGDR")
        schedule = SGDRSchedule(T_0=initial_T_0, T_mult=T_mult, **schedule_params)
        self._configure(
            {
                "patience": patience,
                "extension_factor": extension_factor,
                "max_extensions_per_cycle": max_extensions_per_cycle,
                "max_cycle_length": max_cycle_length,
                "monitor": monitor,
                "greater_is_better": greater_is_better,
                "min_delta": min_delta,
            },
            initial_T_0,
        )
        self.num_extensions = 0
        self.extension_steps = 0
        self._history: deque[RealisedCycle] = deque(maxlen=HISTORY_LENGTH)
        self._enter_cycle(0, schedule.warmup_steps, schedule.cycle_length(0))
        super().__init__(
            optimizer, schedule=schedule, reset_optimizer_state=reset_optimizer_state, last_epoch=last_epoch
        )

    def _configure(self, config: dict[str, Any], initial_T_0: int) -> None:
        """Validate and set the adaptive hyper-parameters (from the constructor or a saved state)."""
        self.patience = check_int("patience", config["patience"], minimum=1)
        self.extension_factor = check_float("extension_factor", config["extension_factor"], minimum=1.0, min_open=True)
        self.max_extensions_per_cycle = check_int(
            "max_extensions_per_cycle", config["max_extensions_per_cycle"], minimum=0
        )
        cap = config["max_cycle_length"]
        # A cap at or below the first cycle's length would forbid every extension: surely a mistake.
        self.max_cycle_length = None if cap is None else check_int("max_cycle_length", cap, minimum=initial_T_0 + 1)
        monitor = config["monitor"]
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"monitor must be a non-empty metric name or None; got {monitor!r}")
        self.monitor: str | None = monitor
        greater = config["greater_is_better"]
        self.greater_is_better: bool | None = None if greater is None else check_bool("greater_is_better", greater)
        self.min_delta = check_float("min_delta", config["min_delta"], minimum=0.0)

    def _config(self) -> dict[str, Any]:
        return {
            "patience": self.patience,
            "extension_factor": self.extension_factor,
            "max_extensions_per_cycle": self.max_extensions_per_cycle,
            "max_cycle_length": self.max_cycle_length,
            "monitor": self.monitor,
            "greater_is_better": self.greater_is_better,
            "min_delta": self.min_delta,
        }

    # ------------------------------------------------------------------ realised boundaries
    def _enter_cycle(self, cycle: int, start: int, length: int | None) -> None:
        """Make `cycle` the current one, with fresh counters (at construction and at each cycle end)."""
        self._cycle, self._cycle_start, self._cycle_length = cycle, start, length
        self.cycle_extensions = 0
        self._bad_evals = 0
        self._best: float | None = None

    def _position_at(self, t: int) -> CyclePosition:
        """The current cycle at its realised length; later cycles nominal, `extension_steps` later."""
        cycle, start, length = self._cycle, self._cycle_start, self._cycle_length
        if length is None or t < start + length:
            return CyclePosition(cycle, start, length, t - start)
        shift = self.extension_steps
        pos = self.schedule.position(t - shift)
        return CyclePosition(pos.cycle, pos.start + shift, pos.length, pos.t_cur)

    def step(self, metrics: Mapping[str, Any] | None = None) -> None:  # type: ignore[override]
        """Advance one optimizer step; with `metrics`, first `observe` them (as `ReduceLROnPlateau.step` does)."""
        if metrics is not None:
            self.observe(metrics)
        super().step()
        length = self._cycle_length
        if length is not None and self.last_epoch >= self._cycle_start + length:
            self._history.append(RealisedCycle(self._cycle, self._cycle_start, length, self.cycle_extensions))
            pos = self.position()
            self._enter_cycle(pos.cycle, pos.start, pos.length)

    def steps_to_next_restart(self) -> int | None:
        """Optimizer steps until the next restart, at the realised length; `None` when none remains."""
        pos = self.position()
        limit = self.schedule.cycle_limit
        if pos.length is None or (limit is not None and pos.cycle + 1 >= limit):
            return None
        return pos.start + pos.length - self.last_epoch

    @property
    def effective_monitor(self) -> str:
        """The metric actually watched: `monitor`, or `"eval_loss"` when none was set."""
        return self.monitor or "eval_loss"

    @property
    def recent_cycles(self) -> tuple[RealisedCycle, ...]:
        """The last (at most `HISTORY_LENGTH`) completed cycles as they ran, oldest first."""
        return tuple(self._history)

    # ------------------------------------------------------------------ evaluations
    def _metric(self, metrics: Mapping[str, Any]) -> float:
        """The monitored value from an evaluation's metrics, as a float."""
        if not isinstance(metrics, Mapping):
            raise ValueError(f"metrics must be a mapping of metric names to numbers; got {metrics!r}")
        key = self.effective_monitor
        if key not in metrics and f"eval_{key}" in metrics:
            key = f"eval_{key}"
        if key not in metrics:
            raise ValueError(
                f"monitor={key!r} is not in the evaluation metrics; available: {sorted(metrics)}. "
                "Set monitor (metric_for_best_model in the Trainer) to one of them."
            )
        value = metrics[key]
        if isinstance(value, (bool, str, bytes)):
            raise ValueError(f"metrics[{key!r}] must be a real number; got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metrics[{key!r}] must be a real number; got {value!r}") from None

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self._best is None:
            return True
        greater = self.greater_is_better
        if greater is None:
            greater = not self.effective_monitor.endswith("loss")
        if greater:
            return value > self._best + self.min_delta
        return value < self._best - self.min_delta

    def observe(self, metrics: Mapping[str, Any]) -> bool:
        """Record one evaluation of the weights after `last_epoch` steps; True when it extended the cycle.

        The Trainer path: a callback calls this from `on_evaluate` while the Trainer steps the
        scheduler once per optimizer step. Raises `ValueError` when the monitored metric is missing.
        """
        value = self._metric(metrics)
        pos = self.position()
        if pos.finished or self.is_at_cycle_end():
            return False  # the cycle this evaluation measures has already ended
        if self._improves(value):
            self._best, self._bad_evals = value, 0
            return False
        self._bad_evals += 1
        if self._bad_evals < self.patience:
            return False
        self._bad_evals = 0
        return self._extend(pos.length)

    def _extend(self, length: int) -> bool:
        """Lengthen the current cycle (now `length` steps) within the bounds; True when it did."""
        if self.cycle_extensions >= self.max_extensions_per_cycle:
            return False
        new_length = max(length + 1, math.floor(length * self.extension_factor + 0.5))
        if self.max_cycle_length is not None:
            new_length = min(new_length, self.max_cycle_length)
        if new_length <= length:
            return False
        self._cycle_length = new_length
        self.cycle_extensions += 1
        self.num_extensions += 1
        self.extension_steps += new_length - length
        self._piece = None
        logger.info(
            "AdaptiveSGDR: %s did not improve for %d evaluations; cycle %d extended from %d to %d steps at step %d",
            self.effective_monitor,
            self.patience,
            self._cycle,
            length,
            new_length,
            self.last_epoch,
        )
        return True

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """`SGDRScheduler`'s state plus the adaptive one: plain Python values, bounded in size."""
        state = super().state_dict()
        state["adaptive"] = {
            "config": self._config(),
            "cycle": int(self._cycle),
            "cycle_start": int(self._cycle_start),
            "cycle_length": None if self._cycle_length is None else int(self._cycle_length),
            "cycle_extensions": int(self.cycle_extensions),
            "bad_evals": int(self._bad_evals),
            "best": None if self._best is None else float(self._best),
            "num_extensions": int(self.num_extensions),
            "extension_steps": int(self.extension_steps),
            "recent_cycles": [list(record) for record in self._history],
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a `state_dict()`; the saved settings win over the constructed ones, as in torch."""
        if "adaptive" not in state_dict:
            raise ValueError("state_dict has no 'adaptive' entry: it was not saved by AdaptiveSGDR")
        super().load_state_dict(state_dict)
        saved = state_dict["adaptive"]
        if saved["config"] != self._config():
            warnings.warn(
                f"resuming with the saved AdaptiveSGDR settings {saved['config']} instead of the constructed "
                f"{self._config()}",
                SGDRWarning,
                stacklevel=2,
            )
        self._configure(saved["config"], self.schedule.T_0)
        self._cycle, self._cycle_start, self._cycle_length = saved["cycle"], saved["cycle_start"], saved["cycle_length"]
        self.cycle_extensions = saved["cycle_extensions"]
        self._bad_evals = saved["bad_evals"]
        self._best = saved["best"]
        self.num_extensions = saved["num_extensions"]
        self.extension_steps = saved["extension_steps"]
        self._history = deque((RealisedCycle(*record) for record in saved["recent_cycles"]), maxlen=HISTORY_LENGTH)
