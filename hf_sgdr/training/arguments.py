"""The SGDR training options, validated once where they come in.

`SGDROptions` is a plain dataclass with help texts, so the same fields reach every front end:
`SGDRTrainingArguments` (a `TrainingArguments` whose fields show on an `HfArgumentParser` command
line; the schedule fields also answer to their short names, `--T_0`, `--num_cycles`, ...),
`SGDRTrainer(..., sgdr_T_0=...)`, the plain-Accelerate helper and the recipes' parsers
(`HfArgumentParser((SGDROptions, ...))`). Its `__post_init__` is the one check of every option, run again on
the copy each front end takes (`sgdr_options()`: fields set after construction are caught there); what leaves
it (that copy, its `scheduler_kwargs()`) is trusted downstream. Schedule fields default to `None`, meaning
"the scheduler's default", so that they merge with `lr_scheduler_kwargs` without ambiguity.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType

from ..registration import SCHEDULER_NAME, normalize_scheduler_kwargs
from ..schedule import parse_cycles
from ..schedule_parameters import PARAMETERS, SCHEDULE_PARAMETERS, ScheduleParameter
from ..snapshot_format.layout import SNAPSHOT_SUBDIR
from ..validation import check_bool, check_float, check_int

#: Where each cycle after a restart starts: from the last cycle's end (SGDR) or the first's ("star").
RestartFrom = Literal["last", "first"]
RESTART_FROM: tuple[str, ...] = get_args(RestartFrom)
#: The schedule parameters that are options (those the Trainer does not own), by option name `sgdr_<name>`.
SCHEDULE_OPTIONS: dict[str, ScheduleParameter] = {f"sgdr_{p.name}": p for p in SCHEDULE_PARAMETERS if p.option}
#: The options that shape the schedule (everything but the optimizer-reset flag).
SCHEDULE_SHAPE_OPTIONS = (*(name for name, p in SCHEDULE_OPTIONS.items() if p.shape), "sgdr_T_0_epochs")


def _schedule_field(name: str) -> Any:
    """The `SGDROptions` field of schedule parameter `name`, its help and `--<name>` alias taken from
    `SCHEDULE_PARAMETERS`: `None` = "the scheduler's default" (a flag: off)."""
    parameter = PARAMETERS[name]
    metadata = {"aliases": [f"--{name}"], "help": parameter.help[:1].upper() + parameter.help[1:] + "."}
    return field(default=bool(parameter.default) if parameter.type is bool else None, metadata=metadata)


@dataclass
class SGDROptions:
    """SGDR schedule, snapshot and weight-averaging options (command-line ready).

    The schedule options (`sgdr_<name>`) are the parameters of `hf_sgdr.schedule_parameters` that the
    Trainer does not own (a test keeps the two lists equal); `sgdr_T_0_epochs` and the snapshot options
    are declared here only.
    """

    sgdr_T_0: int | None = _schedule_field("T_0")
    sgdr_num_cycles: int | None = _schedule_field("num_cycles")
    sgdr_T_mult: float | None = _schedule_field("T_mult")
    sgdr_eta_min: float | None = _schedule_field("eta_min")
    sgdr_eta_min_ratio: float | None = _schedule_field("eta_min_ratio")
    sgdr_lr_decay: float | None = _schedule_field("lr_decay")
    sgdr_restart_warmup_steps: int | None = _schedule_field("restart_warmup_steps")
    sgdr_restart_warmup_ratio: float | None = _schedule_field("restart_warmup_ratio")
    sgdr_cycles: str | None = _schedule_field("cycles")
    sgdr_reset_optimizer_state: bool = _schedule_field("reset_optimizer_state")
    sgdr_T_0_epochs: float | None = field(
        default=None,
        metadata={
            "aliases": ["--T_0_epochs"],
            "help": "The first cycle in epochs (> 0), converted with the real number of optimizer steps per epoch "
            "(gradient accumulation included). Exclusive with sgdr_T_0 and sgdr_num_cycles.",
        },
    )
    restart_from: RestartFrom = field(
        default="last",
        metadata={
            "help": "Where each cycle after a restart starts: 'last' (SGDR: from the previous cycle's end) or "
            "'first' (star: the trainable weights go back to the first cycle's end at every later restart, "
            "with a fresh optimizer state).",
        },
    )
    save_snapshots: bool = field(
        default=True, metadata={"help": "Save a snapshot (the weights after the cycle's last step) at every cycle end."}
    )
    snapshot_dir: str | None = field(
        default=None, metadata={"help": "Where snapshots and their manifest go (default: <output_dir>/snapshots)."}
    )
    max_snapshots: int | None = field(
        default=None, metadata={"help": "Keep only the newest K snapshots (integer >= 1; default: keep all)."}
    )
    swa_start: float | None = field(
        default=None,
        metadata={
            "help": "Average the weights over the last part of every cycle, starting at this fraction of the cycle "
            "(in [0, 1)); the cycle's snapshot then holds the average. Default: no averaging."
        },
    )

    def __post_init__(self) -> None:
        self.validate_sgdr_options()

    def validate_sgdr_options(self) -> None:
        """Coerce (command lines leave strings) and range-check every option; errors name the option."""
        for name, parameter in SCHEDULE_OPTIONS.items():
            if getattr(self, name) is not None:
                setattr(self, name, parameter.check(getattr(self, name), name))
        if self.max_snapshots is not None:
            self.max_snapshots = check_int("max_snapshots", self.max_snapshots, minimum=1)
        if self.sgdr_T_0_epochs is not None:
            self.sgdr_T_0_epochs = check_float("sgdr_T_0_epochs", self.sgdr_T_0_epochs, minimum=0.0, min_open=True)
        if self.swa_start is not None:
            self.swa_start = check_float("swa_start", self.swa_start, minimum=0.0, maximum=1.0, max_open=True)
        self.save_snapshots = check_bool("save_snapshots", self.save_snapshots)
        if self.restart_from not in RESTART_FROM:
            raise ValueError(f"restart_from must be one of {', '.join(RESTART_FROM)}; got {self.restart_from!r}")
        if self.sgdr_cycles is not None:
            parse_cycles(self.sgdr_cycles)  # a bad list fails here, naming the entry
        exclusive = ("sgdr_T_0", "sgdr_T_0_epochs", "sgdr_num_cycles", "sgdr_cycles")
        chosen = [n for n in exclusive if getattr(self, n) is not None]
        if len(chosen) > 1:
            raise ValueError(
                f"give at most one of sgdr_T_0, sgdr_T_0_epochs, sgdr_num_cycles and sgdr_cycles (the first cycle's "
                f"length, the number of cycles fitted to the budget, or the cycles themselves); got "
                f"{', '.join(f'{n}={getattr(self, n)!r}' for n in chosen)}"
            )

    @property
    def resets_optimizer_state(self) -> bool:
        """Whether every restart resets the optimizer state: asked for, or implied by star restarts (each later
        cycle starts from the first cycle's weights with a fresh optimizer state)."""
        return bool(self.sgdr_reset_optimizer_state) or self.restart_from == "first"

    def snapshot_folder(self, output_dir: str | os.PathLike[str] | None) -> Path | None:
        """Where the snapshots go: `snapshot_dir`, else `output_dir/snapshots`; `None` without snapshots."""
        if not self.save_snapshots:
            return None
        if self.snapshot_dir is None and output_dir is None:
            raise ValueError("snapshots need output_dir or snapshot_dir (or save_snapshots=False)")
        return Path(self.snapshot_dir) if self.snapshot_dir is not None else Path(output_dir) / SNAPSHOT_SUBDIR

    def sgdr_options(self, **changes: Any) -> SGDROptions:
        """These options as a plain `SGDROptions` (also from an `SGDRTrainingArguments`), with `changes`.

        The copy is checked again: the fields of a dataclass can be set after it was made
        (`args.max_snapshots = 0`), and the front ends copy the options once, where they take them."""
        values = {f.name: getattr(self, f.name) for f in fields(SGDROptions)}
        unknown = sorted(set(changes) - set(values))
        if unknown:
            raise TypeError(f"unknown SGDR option(s) {unknown}; accepted: {sorted(values)}")
        return SGDROptions(**{**values, **changes})

    def without_schedule(self) -> SGDROptions:
        """The snapshot options and the optimizer-reset flag only (for code that does not build the scheduler)."""
        return self.sgdr_options(**dict.fromkeys(SCHEDULE_SHAPE_OPTIONS))

    def check_no_schedule(self, owner: str) -> None:
        """Refuse schedule options where `owner` cannot apply them (it does not build the scheduler)."""
        given = [name for name in SCHEDULE_SHAPE_OPTIONS if getattr(self, name) is not None]
        if given:
            raise ValueError(
                f"{owner} does not build the scheduler, so it cannot apply {', '.join(given)}: give the schedule to "
                "the scheduler (lr_scheduler_kwargs, SGDRScheduler(...)), or use SGDRTrainer, which builds it"
            )

    def scheduler_kwargs(self, steps_per_epoch: int | None = None) -> dict[str, Any]:
        """The `lr_scheduler_kwargs` these options set (only those given), `sgdr_T_0_epochs` converted to steps.

        `steps_per_epoch` is the number of optimizer steps per epoch (gradient accumulation included);
        it is required when `sgdr_T_0_epochs` is given. A scheduler built elsewhere (a stock Trainer's) gets
        the optimizer reset from the cycle-end handler (`resets_optimizer_state`), which also covers star restarts.
        """
        kwargs = {
            p.name: getattr(self, name) for name, p in SCHEDULE_OPTIONS.items() if getattr(self, name) is not None
        }
        if not self.sgdr_reset_optimizer_state:
            kwargs.pop("reset_optimizer_state")
        if self.sgdr_T_0_epochs is not None:
            if steps_per_epoch is None:
                raise ValueError(
                    "sgdr_T_0_epochs needs the number of optimizer steps per epoch, which a training set without a "
                    "length does not have; give sgdr_T_0 in steps instead"
                )
            steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, minimum=1)
            kwargs["T_0"] = max(1, math.floor(self.sgdr_T_0_epochs * steps_per_epoch + 0.5))
        return kwargs


#: Names of the `SGDROptions` fields (the keyword arguments `SGDRTrainer` routes to the options).
SGDR_OPTION_NAMES = frozenset(f.name for f in fields(SGDROptions))


def merge_scheduler_kwargs(
    lr_scheduler_kwargs: dict[str, Any] | None, options_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """`lr_scheduler_kwargs` plus the options' schedule keys; a key set in both to different values is an error
    naming both (the same value twice, e.g. the docs' two snippets together, is taken)."""
    merged = normalize_scheduler_kwargs(lr_scheduler_kwargs)
    given = normalize_scheduler_kwargs(options_kwargs)
    clashes = sorted(key for key in options_kwargs if key in merged and merged[key] != given[key])
    if clashes:
        names = {p.name: name for name, p in SCHEDULE_OPTIONS.items()}
        names["T_0"] = "sgdr_T_0 / sgdr_T_0_epochs"
        raise ValueError(
            "these schedule parameters are set both in lr_scheduler_kwargs and as SGDR options: "
            + ", ".join(f"{key} (option {names[key]})" for key in clashes)
            + f" ({', '.join(f'{merged[key]!r} and {given[key]!r}' for key in clashes)}); set each in one place"
        )
    merged.update(options_kwargs)
    if "T_0" in merged and merged.get("num_cycles") is not None:
        raise ValueError(
            f"T_0={merged['T_0']!r} and num_cycles={merged['num_cycles']!r} are both set (lr_scheduler_kwargs and SGDR "
            "options together); give either the first cycle's length or the number of cycles"
        )
    return merged


@dataclass
class SGDRTrainingArguments(SGDROptions, TrainingArguments):
    """`TrainingArguments` plus the `SGDROptions` fields, with ``lr_scheduler_type="sgdr"`` by default."""

    lr_scheduler_type: SchedulerType | str = field(
        default=SCHEDULER_NAME,
        metadata={"help": "The learning rate scheduler type to use (default: sgdr). See `SchedulerType`."},
    )

    def __post_init__(self) -> None:
        TrainingArguments.__post_init__(self)
        self.validate_sgdr_options()
