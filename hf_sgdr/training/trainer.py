"""`SGDRTrainer`: a `Trainer` that trains with SGDR and keeps one snapshot per cycle.

It builds the SGDR scheduler itself (`create_scheduler`, which `train()` calls; the Trainer's
`lr_scheduler_kwargs` and the SGDR options merge, a key in both is an error), converts
`sgdr_T_0_epochs` with the real number of optimizer steps per epoch, and installs an
`SGDRCallback` ahead of the reporting callbacks. Options come from an `SGDRTrainingArguments`, an
`SGDROptions` (`sgdr_options=`) or keyword arguments (`SGDRTrainer(..., sgdr_T_0=100,
max_snapshots=5)`), later ones winning field by field. The caller's `TrainingArguments` are not changed:
with the default ``"linear"`` the trainer keeps its own copy naming ``"sgdr"``. The run's snapshots are
evaluated from the ensemble side (`hf_sgdr.snapshots.evaluate_trainer_snapshots(trainer)`).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import logging
import warnings
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import SchedulerType, has_length

from .. import _ensemble_side
from ..registration import SCHEDULER_NAME, get_sgdr_schedule
from .arguments import SGDR_OPTION_NAMES, SGDROptions, merge_scheduler_kwargs
from .callback import SGDRCallback, check_trainer_schedule

logger = logging.getLogger(__name__)


def _refuse_unknown_keywords(kwargs: dict[str, Any], trainer_init: Any) -> None:
    """A keyword neither the `Trainer` (`trainer_init`: the next `__init__` in the class's MRO) nor `SGDROptions`
    takes, refused with the closest name of either (Trainer's own error names only its side, so
    `sgdr_save_snapshots=` for `save_snapshots=` went unexplained)."""
    parameters = inspect.signature(trainer_init).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # a Trainer subclass that takes any keyword checks its own
    accepted = set(parameters)
    for name in kwargs:
        if name not in accepted:
            close = difflib.get_close_matches(name, sorted(SGDR_OPTION_NAMES | accepted), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"SGDRTrainer got an unexpected keyword argument {name!r}{hint} (it takes Trainer's arguments and "
                "the SGDROptions fields: sgdr_T_0, sgdr_num_cycles, save_snapshots, max_snapshots, ...)"
            )


class SGDRTrainer(Trainer):
    """`transformers.Trainer` with the SGDR schedule, snapshots at cycle ends, optimizer resets and
    weight averaging.

    Args:
        model, args, *trainer_args, **kwargs: As for `Trainer`. `args` may be an `SGDRTrainingArguments`.
        sgdr_options: SGDR options; replaces those of an `SGDRTrainingArguments`.
        snapshot_task: Task name for the snapshot manifest (default: derived from the model class).
        **kwargs: `SGDROptions` fields (`sgdr_T_0`, `max_snapshots`, `swa_start`, ...) override the
            options one by one; everything else goes to `Trainer`.
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        args: TrainingArguments | None = None,
        *trainer_args: Any,
        sgdr_options: SGDROptions | None = None,
        snapshot_task: str | None = None,
        **kwargs: Any,
    ) -> None:
        option_kwargs = {name: kwargs.pop(name) for name in list(kwargs) if name in SGDR_OPTION_NAMES}
        _refuse_unknown_keywords(kwargs, super().__init__)
        base = sgdr_options if sgdr_options is not None else args if isinstance(args, SGDROptions) else SGDROptions()
        self.sgdr_options = base.sgdr_options(**option_kwargs)
        self._sgdr_steps_per_epoch: int | None = None
        super().__init__(model, args, *trainer_args, **kwargs)
        if self.lr_scheduler is None:
            self.args = _with_sgdr_scheduler(self.args)
            self._check_sgdr_schedule()
        else:  # a ready scheduler came through `optimizers`
            self.sgdr_options.check_no_schedule("SGDRTrainer with a scheduler passed through `optimizers`")
        self.sgdr_callback = SGDRCallback(self.sgdr_options.without_schedule(), task=snapshot_task).attach(
            self, saves_announced=True
        )

    def _check_sgdr_schedule(self) -> None:
        """Refuse bad schedule arguments now, not at `train()`: with `max_steps` the schedule is built in full;
        otherwise the budget fit (and `sgdr_T_0_epochs`) waits for the real number of steps."""
        options = self.sgdr_options
        by_epochs = options.sgdr_T_0_epochs is not None
        kwargs = self._sgdr_scheduler_kwargs(options.sgdr_options(sgdr_T_0_epochs=None) if by_epochs else options)
        check_trainer_schedule(self.args, self.optimizer, kwargs, budget_known=not by_epochs)

    def _sgdr_scheduler_kwargs(self, options: SGDROptions, steps_per_epoch: int | None = None) -> dict[str, Any]:
        """`lr_scheduler_kwargs` and the schedule keys of `options`, merged (a key in both is an error)."""
        return merge_scheduler_kwargs(self.args.lr_scheduler_kwargs, options.scheduler_kwargs(steps_per_epoch))

    def set_initial_training_values(self, args: TrainingArguments, dataloader: Any) -> tuple[Any, ...]:
        """As in `Trainer`; also keeps the optimizer steps per epoch for `sgdr_T_0_epochs`."""
        values = super().set_initial_training_values(args, dataloader)
        self._sgdr_steps_per_epoch = int(values[1]) if has_length(dataloader) else None
        return values

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """Build the SGDR scheduler from `lr_scheduler_kwargs` and the SGDR options."""
        if self.lr_scheduler is None:
            kwargs = self._sgdr_scheduler_kwargs(self.sgdr_options, self._sgdr_steps_per_epoch)
            self.lr_scheduler = get_sgdr_schedule(
                optimizer if optimizer is not None else self.optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                **kwargs,
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """As `Trainer.train`; `resume_from_checkpoint=True` skips checkpoints a killed run left half-written,
        and the callback learns which checkpoint holds the running weight average."""
        if resume_from_checkpoint is True:  # the newest checkpoint written in full, not a half-written one
            resume_from_checkpoint = SGDRCallback.last_complete_checkpoint(self.args.output_dir) or True
        self.sgdr_callback.resume_from_checkpoint = (
            resume_from_checkpoint if isinstance(resume_from_checkpoint, str) else None
        )
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,
        )

    def evaluate_snapshots(self, *args: Any, **kwargs: Any) -> Any:
        """Deprecated: use `hf_sgdr.snapshots.evaluate_trainer_snapshots(trainer, ...)`, which takes the same
        arguments (the snapshots are evaluated from the ensemble side; training does not import it)."""
        warnings.warn(
            "SGDRTrainer.evaluate_snapshots is deprecated and will be removed in hf_sgdr 0.3: use "
            "hf_sgdr.snapshots.evaluate_trainer_snapshots(trainer, ...), which takes the same arguments",
            FutureWarning,
            stacklevel=2,
        )
        return _ensemble_side.evaluate_trainer_snapshots(self, *args, **kwargs)

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        """Before the Trainer writes a checkpoint, finish the pending snapshot writes and store the running
        average in it, so that a checkpoint (complete once its `trainer_state.json` is written) implies them.
        """
        step = self.state.global_step
        folder = SGDRCallback.checkpoint_folder(self._get_output_dir(trial=trial), step)
        self.sgdr_callback.save_checkpoint_state(folder, step)
        super()._save_checkpoint(model, trial)


def _with_sgdr_scheduler(args: TrainingArguments) -> TrainingArguments:
    """`args` if they name ``"sgdr"``; a copy naming it if they name the `TrainingArguments` default
    ``"linear"`` (the caller's object stays as it was: a stock `Trainer` given it trains with linear);
    any other scheduler type is refused."""
    name = SchedulerType(args.lr_scheduler_type).value
    if name == SCHEDULER_NAME:
        return args
    if name != "linear":
        raise ValueError(
            f"SGDRTrainer trains with lr_scheduler_type='sgdr'; got lr_scheduler_type={name!r} (use the stock "
            "Trainer for other schedules, or pass lr_scheduler_type='sgdr')"
        )
    logger.info("SGDRTrainer: lr_scheduler_type 'linear' (the TrainingArguments default) replaced by 'sgdr'")
    own = copy.copy(args)  # no __post_init__: the devices and settings the Trainer set up stay
    own.lr_scheduler_type = SchedulerType(SCHEDULER_NAME)
    return own
