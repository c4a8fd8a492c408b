"""`SGDRScheduler`: the schedule of `hf_sgdr.schedule` as a torch `LRScheduler` (layer 2).

The scheduler's own step counter (`last_epoch`) is the one source of truth for events: a restart or
a cycle end is asked of the scheduler, never derived from the Trainer's `global_step`, so gradient
accumulation, several processes and skipped fp16 steps cannot shift them.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from .optimizer_reset import check_resettable, reset_optimizer_state
from .schedule import CyclePosition, SchedulePiece, SGDRSchedule, SGDRWarning, build_schedule
from .schedule_parameters import NUM_TRAINING_STEPS
from .validation import check_bool, check_int


class SGDRScheduler(LRScheduler):
    """Cosine annealing with warm restarts, one lr per param group, exact integer events.

    Args:
        optimizer: The optimizer (plain or wrapped by Accelerate).
        T_0: Steps in the first cycle; or leave `None` and give `num_cycles` / `num_training_steps`
            to fit the budget so that training ends exactly on a cycle end.
        num_training_steps: The training budget in optimizer steps; enables the budget fit and the
            pitfall warnings (ending mid-cycle, fewer than 2 restarts, a narrow lr range).
        reset_optimizer_state: At every restart, reset the optimizer's per-parameter state (Adam
            moments, SGD momentum, step counts) in place, as a fresh optimizer would have it.
        last_epoch: As in torch; `-1` starts a new schedule.
        schedule: A ready `SGDRSchedule` instead of the individual hyper-parameters.
        **schedule_params: The other schedule parameters, by name (`hf_sgdr.schedule_parameters`, the one
            list): `num_cycles`, `T_mult`, `eta_min` (one value or one per param group) or `eta_min_ratio`,
            `eta_max`, `lr_decay`, `warmup_steps`, `warmup_start_lr`, `restart_warmup_steps` or
            `restart_warmup_ratio`, `cycle_limit`, and `cycles`, an explicit cycle list
            instead of `T_0`/`T_mult`, e.g. ``[[0.4, 1], [0.15, 0.5], [0.15, 0.5], ...]`` (see
            `hf_sgdr.schedule.parse_cycles`). See `SGDRSchedule` for their meaning.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_0: int | None = None,
        *,
        num_training_steps: int | None = None,
        reset_optimizer_state: bool = False,
        last_epoch: int = -1,
        schedule: SGDRSchedule | None = None,
        **schedule_params: Any,
    ) -> None:
        if num_training_steps is not None:
            num_training_steps = NUM_TRAINING_STEPS.check(num_training_steps)
        if schedule is None:
            schedule = build_schedule(T_0, num_training_steps=num_training_steps, **schedule_params)
        elif T_0 is not None or schedule_params:
            raise TypeError("pass either schedule or the schedule parameters, not both")
        self.schedule = schedule
        self.reset_optimizer_state = check_bool("reset_optimizer_state", reset_optimizer_state)
        if self.reset_optimizer_state:
            check_resettable(optimizer)
        self.num_optimizer_resets = 0
        self._piece: SchedulePiece | None = None
        self._check_peaks(optimizer)
        super().__init__(optimizer, check_int("last_epoch", last_epoch, minimum=-1))
        if num_training_steps is not None and last_epoch == -1:
            for message in schedule.budget_warnings(num_training_steps, [float(lr) for lr in self.base_lrs]):
                warnings.warn(message, SGDRWarning, stacklevel=_user_stacklevel())

    def _check_peaks(self, optimizer: torch.optim.Optimizer) -> None:
        """Refuse a floor at or above a group's peak before anything is written to the optimizer."""
        self.schedule.check_floors([float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups])

    def _adopt_new_param_groups(self) -> None:
        """Give param groups added after construction a peak (their own lr), as torch gives it at construction."""
        groups = self.optimizer.param_groups
        if len(groups) < len(self.base_lrs):
            raise ValueError(
                f"the optimizer has {len(groups)} param groups but the scheduler schedules {len(self.base_lrs)}; "
                "param groups cannot be removed from an optimizer under a scheduler"
            )
        for index in range(len(self.base_lrs), len(groups)):
            group = groups[index]
            lr = group["lr"]
            group.setdefault("initial_lr", lr.clone() if isinstance(lr, torch.Tensor) else lr)
            try:
                self.schedule.check_floors([float(x) for x in [*self.base_lrs, group["initial_lr"]]])
            except ValueError as error:
                raise ValueError(f"param group {index} (added with optimizer.add_param_group): {error}") from None
            self.base_lrs.append(group["initial_lr"])
        self._piece = None  # a piece holds one amplitude per group

    # ------------------------------------------------------------------ torch hooks
    def get_lr(self) -> list[float | torch.Tensor]:
        """The lrs for `last_epoch`, one per param group."""
        return self._current_piece().lrs(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float | torch.Tensor]:
        return self.get_lr()

    def step(self, epoch: int | None = None) -> None:
        """Advance one optimizer step (call after `optimizer.step()`); reset optimizer state at a restart.

        The common case (no `epoch`, past torch's first-step call-order check) skips the base class'
        per-step bookkeeping: this runs on every training step. A param group added with
        `optimizer.add_param_group` since the last step is scheduled from its own lr.
        """
        if len(self.optimizer.param_groups) != len(self.base_lrs):
            self._adopt_new_param_groups()
        if epoch is not None or self._step_count < 2:
            if epoch is not None:
                epoch = check_int("epoch", epoch, minimum=0)
            super().step(epoch)
        else:
            self._step_count += 1
            self.last_epoch += 1
            lrs = self.get_lr()
            tensors = False
            for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(float(lr))
                    tensors = True
                else:
                    group["lr"] = lr
            self._last_lr = (
                [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"] for g in self.optimizer.param_groups]
                if tensors
                else lrs
            )
        if self.reset_optimizer_state and self.is_restart_step():
            reset_optimizer_state(self.optimizer)
            self.num_optimizer_resets += 1

    # ------------------------------------------------------------------ events
    def _current_piece(self) -> SchedulePiece:
        """The schedule piece holding `last_epoch`; asked of the schedule only when a step leaves it."""
        piece = self._piece
        t = self.last_epoch
        if piece is None or not piece.begin <= t < piece.end:
            piece = self.schedule.piece_at(self._position_at(t), self.base_lrs)
            self._piece = piece
        return piece

    def _position_at(self, t: int) -> CyclePosition:
        """Where step `t` falls: the one hook a subclass overrides to move cycle boundaries (`AdaptiveSGDR`)."""
        return self.schedule.position(t)

    def position(self) -> CyclePosition:
        """Where `last_epoch` falls in the schedule."""
        return self._current_piece().position_of(self.last_epoch)

    @property
    def current_cycle(self) -> int:
        """Index of the cycle the next optimizer step belongs to (`cycle_limit` once finished)."""
        return self.position().cycle

    def cycle_position(self) -> float:
        """Fraction of the current cycle already done, in [0, 1)."""
        return self.position().fraction

    def is_at_cycle_end(self) -> bool:
        """True right after the step that completed a cycle (time to take that cycle's snapshot)."""
        pos = self.position()
        return self.last_epoch > 0 and pos.t_cur == 0 and pos.cycle >= 1

    def is_restart_step(self) -> bool:
        """True when the next optimizer step is the first of a new cycle (the lr just jumped back up)."""
        return self.is_at_cycle_end() and self.position().length is not None

    @property
    def completed_cycle(self) -> int | None:
        """Index of the cycle that just ended when `is_at_cycle_end()`, else `None`."""
        return self.position().cycle - 1 if self.is_at_cycle_end() else None

    def steps_to_next_restart(self) -> int | None:
        """Optimizer steps until the next restart; `None` when no restart remains."""
        return self.schedule.steps_to_next_restart(self.last_epoch)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Plain Python values only, so `torch.load(..., weights_only=True)` accepts it."""
        return {
            "last_epoch": int(self.last_epoch),
            "_step_count": int(self._step_count),
            "base_lrs": list(self.base_lrs),
            "_last_lr": list(self._last_lr),
            "schedule": self.schedule.to_dict(),
            "reset_optimizer_state": bool(self.reset_optimizer_state),
            "num_optimizer_resets": int(self.num_optimizer_resets),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a `state_dict()`; the saved schedule wins over the constructed one, as in torch."""
        saved = SGDRSchedule.from_dict(state_dict["schedule"])
        if saved != self.schedule:
            warnings.warn(
                f"resuming with the saved SGDR schedule {saved} instead of the constructed {self.schedule}",
                SGDRWarning,
                stacklevel=_user_stacklevel(),
            )
        self.schedule = saved
        self.last_epoch = state_dict["last_epoch"]
        self._step_count = state_dict["_step_count"]
        self.base_lrs = list(state_dict["base_lrs"])
        self._last_lr = list(state_dict["_last_lr"])
        self.reset_optimizer_state = state_dict["reset_optimizer_state"]
        self.num_optimizer_resets = state_dict.get("num_optimizer_resets", 0)
        self._piece = None


#: `SGDRScheduler` under a name after torch's `CosineAnnealingWarmRestarts` (same keywords: `T_0, T_mult,
#: eta_min, eta_max, lr_decay, warmup_steps, last_epoch, reset_optimizer_state`).
CosineAnnealingWarmRestartsScheduler = SGDRScheduler


class SGDRWithWarmup(SGDRScheduler):
    """`SGDRScheduler` with the warmup first among the positional arguments:
    `SGDRWithWarmup(optimizer, warmup_steps, T_0, ...)`."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int,
        T_0: int,
        T_mult: float = 1.0,
        eta_min: float = 0.0,
        warmup_start_lr: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            optimizer,
            T_0=T_0,
            T_mult=T_mult,
            eta_min=eta_min,
            warmup_steps=warmup_steps,
            warmup_start_lr=warmup_start_lr,
            **kwargs,
        )


#: Packages between a user's line and the scheduler when a Trainer or Accelerate builds or resumes it.
_LIBRARY_PACKAGES = frozenset({"hf_sgdr", "transformers", "accelerate", "torch"})


def _user_stacklevel() -> int:
    """The `stacklevel` of a warning issued by the caller of this function that points at the first frame outside
    `_LIBRARY_PACKAGES`: the user's `trainer.train()` line, not transformers' scheduler factory."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _LIBRARY_PACKAGES:
        frame, level = frame.f_back, level + 1
    return level
