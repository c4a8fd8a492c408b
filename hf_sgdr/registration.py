"""Makes ``"sgdr"`` a scheduler name that `transformers` accepts everywhere (layer 3).

`transformers` has no scheduler registry: `SchedulerType` is an enum checked by
`TrainingArguments.__post_init__`, `set_lr_scheduler` and `get_scheduler`, and the factory is looked up
in `optimization.TYPE_TO_SCHEDULER_FUNCTION`. So registration adds one member to the enum (every
place an enum keeps its members) and one entry to that dict, idempotently; and because `get_scheduler`
refuses some of what ``"sgdr"`` accepts before the factory runs (no `num_warmup_steps`, non-mapping kwargs),
it routes that one name past those checks, leaving every other name as it was.
`HfArgumentParser` reads the enum's choices when a parser is built, so `import hf_sgdr` must come
before building one.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._lazy import when_imported
from .schedule import build_schedule, parse_cycles, resolve_cycles
from .schedule_parameters import ALIASES, PARAMETERS, SCHEDULE_PARAMETERS, unknown_text
from .validation import check_bool, check_int

if TYPE_CHECKING:  # torch only where the factory runs: `import hf_sgdr` stays light
    import torch

    from .scheduler import SGDRScheduler

SCHEDULER_NAME = "sgdr"

#: Keys `lr_scheduler_kwargs` may hold for ``lr_scheduler_type="sgdr"``, with their meaning: the parameters of
#: `schedule_parameters` (the one list), from which command-line help and docs are made.
SCHEDULER_KWARGS: dict[str, str] = {p.name: p.help for p in SCHEDULE_PARAMETERS}
_OPTIONAL_KWARGS = frozenset(p.name for p in SCHEDULE_PARAMETERS if p.nullable)


def normalize_scheduler_kwargs(kwargs: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Check the keys of `lr_scheduler_kwargs` and turn textual "none"/"null" into `None`.

    Values themselves are coerced and range-checked by the schedule (strings such as ``"1e-3"`` that
    a command line leaves behind are accepted there). Anything but a mapping (a command line's
    ``T_0=5``, which transformers leaves as a string) is refused with the expected form.
    """
    kwargs = _as_mapping(kwargs)
    unknown = [key for key in kwargs if key not in SCHEDULER_KWARGS and key not in ALIASES]
    if unknown:
        raise ValueError(
            f"lr_scheduler_kwargs has unknown key(s) for lr_scheduler_type='sgdr': "
            f"{unknown_text(unknown, [*SCHEDULER_KWARGS, *ALIASES])}; "
            f"accepted: {', '.join(SCHEDULER_KWARGS)} (and transformers' {', '.join(ALIASES)})"
        )
    for alias in ALIASES.keys() & kwargs.keys():  # transformers' names (cosine_with_min_lr) for ours
        name = ALIASES[alias]
        if name in kwargs:
            raise ValueError(f"lr_scheduler_kwargs sets both {alias!r} and {name!r} (the same parameter); set one")
        kwargs[name] = kwargs.pop(alias)
    for key in _OPTIONAL_KWARGS & kwargs.keys():
        value = kwargs[key]
        if isinstance(value, str) and value.strip().lower() in {"", "none", "null"}:
            kwargs[key] = None
    return kwargs


def _as_mapping(kwargs: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if isinstance(kwargs, Mapping):
        return dict(kwargs)
    hint = ""
    pairs = (
        [item.partition("=") for item in re.split(r"[,\s]+", kwargs.strip()) if item] if isinstance(kwargs, str) else []
    )
    if pairs and all(key and sep for key, sep, _ in pairs):
        hint = f"; for {kwargs!r} write '{json.dumps({key: _json_value(value) for key, _, value in pairs})}'"
    raise ValueError(
        "lr_scheduler_kwargs for lr_scheduler_type='sgdr' must be a dict; on a command line a JSON object, "
        f'e.g. --lr_scheduler_kwargs \'{{"T_0": 100, "T_mult": 2}}\'; got {kwargs!r}{hint}'
    )


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


#: Steps per cycle of the stand-in budget that checks a list of cycle fractions before the real budget is known
#: (any budget that fits every cycle checks the same rules).
_STAND_IN_STEPS_PER_CYCLE = 1_000


def check_scheduler_kwargs(
    kwargs: Mapping[str, Any] | str | None,
    *,
    lrs: Sequence[float] = (1.0,),
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
) -> None:
    """Check `lr_scheduler_kwargs` for ``"sgdr"`` before training spends anything: raise `ValueError`
    naming the parameter, as building the scheduler would.

    The schedule itself is built (layer 1, no torch, no optimizer) and its floors held against `lrs`, the
    param groups' initial lrs. Without `T_0` and without a known budget, the fitted first cycle is unknown
    until `train()`: everything else is checked; cycles listed as fractions of that budget are checked against
    a stand-in budget (their own rules: all fractions, summing to 1).
    """
    kwargs = scheduler_arguments(kwargs, num_warmup_steps)
    check_bool("reset_optimizer_state", kwargs.pop("reset_optimizer_state", False))
    if num_training_steps is None and kwargs.get("cycles") is not None:
        cycles = parse_cycles(kwargs["cycles"])
        if any(isinstance(length, float) for length, _ in cycles):  # fractions of the budget train() will know:
            stand_in = len(cycles) * _STAND_IN_STEPS_PER_CYCLE + (kwargs.get("warmup_steps") or 0)
            kwargs["cycles"] = resolve_cycles(cycles, stand_in, kwargs.get("warmup_steps") or 0)
    elif kwargs.get("T_0") is None and num_training_steps is None:
        PARAMETERS["num_cycles"].check(kwargs.pop("num_cycles", None))
        kwargs["T_0"] = PARAMETERS["restart_warmup_steps"].check(kwargs.get("restart_warmup_steps", 0)) + 1
    build_schedule(num_training_steps=num_training_steps, **kwargs).check_floors(lrs)


def scheduler_arguments(kwargs: Mapping[str, Any] | str | None, num_warmup_steps: int | None) -> dict[str, Any]:
    """`lr_scheduler_kwargs` normalized (`normalize_scheduler_kwargs`), with the Trainer's warmup
    (`num_warmup_steps`) as `warmup_steps`; a different `warmup_steps` among them is refused."""
    kwargs = normalize_scheduler_kwargs(kwargs)
    if num_warmup_steps is not None:
        num_warmup_steps = check_int("num_warmup_steps", num_warmup_steps, minimum=0)
        given = kwargs.get("warmup_steps")
        if given is not None and num_warmup_steps and check_int("warmup_steps", given, minimum=0) != num_warmup_steps:
            raise ValueError(
                f"warmup_steps={given!r} in lr_scheduler_kwargs disagrees with the Trainer's warmup "
                f"({num_warmup_steps} steps from TrainingArguments.warmup_steps); set only one"
            )
        kwargs.setdefault("warmup_steps", num_warmup_steps)
    return kwargs


def get_sgdr_schedule(
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
    last_epoch: int = -1,
    **kwargs: Any,
) -> SGDRScheduler:
    """The ``"sgdr"`` factory for `transformers.get_scheduler` and the `Trainer`.

    `num_warmup_steps` (the `Trainer`'s `warmup_steps`, a ratio below 1) becomes the initial warmup (none
    when it is not given). Without `T_0` or `num_cycles`, the budget is fitted with
    `hf_sgdr.schedule.DEFAULT_NUM_CYCLES` cycles so that training ends on a cycle end.
    """
    from .scheduler import SGDRScheduler

    return SGDRScheduler(
        optimizer,
        num_training_steps=num_training_steps,
        last_epoch=last_epoch,
        **scheduler_arguments(kwargs, num_warmup_steps),
    )


def register_sgdr_scheduler() -> None:
    """Add ``"sgdr"`` to `transformers.SchedulerType` and its factory to `TYPE_TO_SCHEDULER_FUNCTION`.

    Also routes ``"sgdr"`` in `transformers.get_scheduler` (the module function, `transformers.get_scheduler`,
    and the `Trainer`'s) to the factory directly, past two checks transformers makes of every schedule:
    `num_warmup_steps` defaults to 0 as in the schedule, and `scheduler_specific_kwargs` that is not a
    mapping (a command line's ``T_0=5``) gets an error saying what the option expects, not ``**`` on a string.
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
    """`get_sgdr_schedule` as the ``"sgdr"`` entry of `optimization.TYPE_TO_SCHEDULER_FUNCTION`, and
    ``"sgdr"`` routed past `get_scheduler`'s generic checks (see `register_sgdr_scheduler`)."""
    import transformers.trainer_utils as trainer_utils  # loaded already: optimization imports it

    optimization.TYPE_TO_SCHEDULER_FUNCTION[_add_scheduler_type(trainer_utils)] = get_sgdr_schedule
    routed = _route_sgdr(optimization.get_scheduler)
    for name in ("transformers.optimization", "transformers", "transformers.trainer"):
        module = optimization if name == "transformers.optimization" else sys.modules.get(name)
        if module is not None:
            module.get_scheduler = routed


def _route_sgdr(get_scheduler: Callable[..., Any]) -> Callable[..., Any]:
    """`get_scheduler` with ``"sgdr"`` built by `get_sgdr_schedule`; other names and layer-wise optimizers go to
    `get_scheduler` itself."""
    if getattr(get_scheduler, "routes_sgdr", False):
        return get_scheduler

    @functools.wraps(get_scheduler)
    def routed(
        name: Any,
        optimizer: Any = None,
        num_warmup_steps: int | None = None,
        num_training_steps: int | None = None,
        scheduler_specific_kwargs: Mapping[str, Any] | str | None = None,
    ) -> Any:
        from transformers.optimization import LayerWiseDummyOptimizer

        if name == SCHEDULER_NAME and not isinstance(optimizer, LayerWiseDummyOptimizer):
            kwargs = normalize_scheduler_kwargs(scheduler_specific_kwargs)
            return get_sgdr_schedule(optimizer, num_warmup_steps, num_training_steps, **kwargs)
        return get_scheduler(name, optimizer, num_warmup_steps, num_training_steps, scheduler_specific_kwargs)

    routed.routes_sgdr = True  # type: ignore[attr-defined]
    return routed
