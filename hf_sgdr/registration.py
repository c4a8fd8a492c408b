"""Makes ``"sgdr"`` a scheduler name that `transformers` accepts everywhere (layer 3).

`transformers` has no scheduler registry: `SchedulerType` is an enum checked by
`TrainingArguments.__post_init__`, `set_lr_scheduler` and `get_scheduler`, and the factory is looked up
in `optimization.TYPE_TO_SCHEDULER_FUNCTION`. So registration adds one member to the enum (every
place an enum keeps its members) and one entry to that dict, idempotently, and touches nothing else.
`HfArgumentParser` reads the enum's choices when a parser is built, so `import hf_sgdr` must come
before building one.
"""

from __future__ import annotations

import difflib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._lazy import when_imported
from .schedule import DEFAULT_NUM_CYCLES
from .validation import check_int

if TYPE_CHECKING:  # torch only where the factory runs: `import hf_sgdr` stays light
    import torch

    from .scheduler import SGDRScheduler

SCHEDULER_NAME = "sgdr"

#: Keys `lr_scheduler_kwargs` may hold for ``lr_scheduler_type="sgdr"``, with their meaning (the one
#: place the option texts live: command-line help and docs are made from it).
SCHEDULER_KWARGS: dict[str, str] = {
    "T_0": "steps in the first cycle (integer >= 1); omit to fit the budget with num_cycles",
    "num_cycles": "number of cycles fitted to the training budget so that it ends on a cycle end "
    f"(default {DEFAULT_NUM_CYCLES} when T_0 is not given)",
    "T_mult": "cycle length growth factor, any float >= 1 (default 1)",
    "eta_min": "lr floor, absolute, >= 0 (default 0)",
    "eta_max": "peak lr for every param group (default: each group's initial lr)",
    "lr_decay": "per-cycle factor in (0, 1] on peak and floor (default 1)",
    "warmup_steps": "initial linear warmup steps before cycle 0 (default 0; the Trainer passes its own)",
    "warmup_start_lr": "lr at step 0 of the initial warmup (default 0)",
    "restart_warmup_steps": "linear warmup at the start of every later cycle, < T_0 (default 0)",
    "cycle_limit": "after this many cycles the lr holds at the last floor (default: no limit)",
    "cycles": "explicit cycles instead of T_0/T_mult: [[length, peak], ...], length in steps or as a fraction of "
    "the budget, peak a factor on the lr (e.g. [[0.4, 1], [0.15, 0.5], [0.15, 0.5], [0.15, 0.5], [0.15, 0.5]])",
    "reset_optimizer_state": "reset optimizer moments/momentum at each restart (default false)",
}
_OPTIONAL_KWARGS = frozenset({"T_0", "eta_max", "cycle_limit", "num_cycles", "cycles"})


def normalize_scheduler_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Check the keys of `lr_scheduler_kwargs` and turn textual "none"/"null" into `None`.

    Values themselves are coerced and range-checked by the schedule (strings such as ``"1e-3"`` that
    a command line leaves behind are accepted there).
    """
    kwargs = dict(kwargs or {})
    unknown = [key for key in kwargs if key not in SCHEDULER_KWARGS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, SCHEDULER_KWARGS, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"lr_scheduler_kwargs has unknown key(s) for lr_scheduler_type='sgdr': {', '.join(hints)}; "
            f"accepted: {', '.join(SCHEDULER_KWARGS)}"
        )
    for key in _OPTIONAL_KWARGS & kwargs.keys():
        value = kwargs[key]
        if isinstance(value, str) and value.strip().lower() in {"", "none", "null"}:
            kwargs[key] = None
    return kwargs


def get_sgdr_schedule(
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
    last_epoch: int = -1,
    **kwargs: Any,
) -> SGDRScheduler:
    """The ``"sgdr"`` factory for `transformers.get_scheduler` and the `Trainer`.

    `num_warmup_steps` (from `warmup_steps` / `warmup_ratio`) becomes the initial warmup. Without
    `T_0` or `num_cycles`, the budget is fitted with `hf_sgdr.schedule.DEFAULT_NUM_CYCLES` cycles so
    that training ends on a cycle end.
    """
    from .scheduler import SGDRScheduler

    kwargs = normalize_scheduler_kwargs(kwargs)
    if num_warmup_steps is not None:
        num_warmup_steps = check_int("num_warmup_steps", num_warmup_steps, minimum=0)
        given = kwargs.get("warmup_steps")
        if given is not None and num_warmup_steps and check_int("warmup_steps", given, minimum=0) != num_warmup_steps:
            raise ValueError(
                f"warmup_steps={given!r} in lr_scheduler_kwargs disagrees with the Trainer's warmup "
                f"({num_warmup_steps} steps from warmup_steps/warmup_ratio); set only one"
            )
        kwargs.setdefault("warmup_steps", num_warmup_steps)
    return SGDRScheduler(optimizer, num_training_steps=num_training_steps, last_epoch=last_epoch, **kwargs)


def register_sgdr_scheduler() -> None:
    """Add ``"sgdr"`` to `transformers.SchedulerType` and its factory to `TYPE_TO_SCHEDULER_FUNCTION`.

    Idempotent; imports both `transformers` modules. `import hf_sgdr` does the same through
    `register_sgdr_scheduler_on_import`, without importing them itself.
    """
    import transformers.optimization as optimization
    import transformers.trainer_utils as trainer_utils

    _add_scheduler_type(trainer_utils)
    _add_factory(optimization)


def register_sgdr_scheduler_on_import() -> None:
    """Register ``"sgdr"`` now where `transformers`' modules are loaded, else the moment they are.

    `SchedulerType` lives in `transformers.trainer_utils`, which imports `peft` when it is installed
    (seconds); every use of a scheduler name (`TrainingArguments`, `HfArgumentParser(TrainingArguments)`,
    `get_scheduler`, unpickling `training_args.bin`) imports that module first, so the member is there
    before any of them reads the enum. Called by `import hf_sgdr`.
    """
    when_imported("transformers.trainer_utils", _add_scheduler_type)
    when_imported("transformers.optimization", _add_factory)


def _add_scheduler_type(trainer_utils: ModuleType) -> Any:
    """The ``SGDR`` member of `trainer_utils.SchedulerType`, added in every place an enum keeps members."""
    SchedulerType = trainer_utils.SchedulerType
    member = SchedulerType._value2member_map_.get(SCHEDULER_NAME)
    if member is None:
        member = str.__new__(SchedulerType, SCHEDULER_NAME)
        member._name_ = "SGDR"
        member._value_ = SCHEDULER_NAME
        member.__objclass__ = SchedulerType
        member._sort_order_ = len(SchedulerType._member_names_)
        if hasattr(SchedulerType, "_add_member_"):  # Python >= 3.13
            SchedulerType._add_member_("SGDR", member)
        else:
            type.__setattr__(SchedulerType, "SGDR", member)
            SchedulerType._member_map_["SGDR"] = member
        SchedulerType._value2member_map_[SCHEDULER_NAME] = member
        if "SGDR" not in SchedulerType._member_names_:
            SchedulerType._member_names_.append("SGDR")
    return member


def _add_factory(optimization: ModuleType) -> None:
    """`get_sgdr_schedule` as the ``"sgdr"`` entry of `optimization.TYPE_TO_SCHEDULER_FUNCTION`."""
    import transformers.trainer_utils as trainer_utils  # loaded already: optimization imports it

    optimization.TYPE_TO_SCHEDULER_FUNCTION[_add_scheduler_type(trainer_utils)] = get_sgdr_schedule
