"""`SGDRCallback`: the `transformers.Trainer` layer over `CycleEndHandler`.

Events are taken in `on_step_end`, where the Trainer has already stepped its scheduler (once per
optimizer step, not at all when the optimizer skipped the step) and `get_last_lr()` shows the
restart value. At a cycle end the callback asks the Trainer to log at that step, so the training
loss of the step reaches the snapshot's record and the `sgdr/...` event values reach every
reporting integration (TensorBoard, W&B, ...) and `state.log_history`. For that the callback must
come before the reporting callbacks: `SGDRTrainer` installs it so, and `SGDRCallback(...).attach(trainer)`
does the same for a stock `Trainer` (`trainer.add_callback` works too, but then the reporters that
come before it miss the `sgdr/...` values; `state.log_history` still has them).
"""

from __future__ import annotations

import logging
import math
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import DefaultFlowCallback, Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SchedulerType

from ..registration import SCHEDULER_NAME, check_scheduler_kwargs
from ..validation import finite_number
from .arguments import SGDROptions
from .cycle_end import CycleEndHandler, training_record
from .loss_scaling import problem_type_awaits_first_batch, unscaled_loss_warning

logger = logging.getLogger(__name__)


class SGDRCallback(TrainerCallback):
    """Snapshots at cycle ends, optimizer resets at restarts, weight averaging and event logging
    for a `Trainer` whose scheduler is an SGDR scheduler (``lr_scheduler_type="sgdr"``).

    Args:
        options: The snapshot options (`save_snapshots`, `snapshot_dir`, `max_snapshots`,
            `swa_start`, `sgdr_reset_optimizer_state`, `restart_from`); the schedule itself comes from the Trainer's
            `lr_scheduler_kwargs`, so schedule fields here are refused.
        task: Task name for the manifest (default: derived from the model class).
        **option_kwargs: Individual `SGDROptions` fields, overriding `options`.
    """

    def __init__(self, options: SGDROptions | None = None, *, task: str | None = None, **option_kwargs: Any) -> None:
        options = (options or SGDROptions()).sgdr_options(**option_kwargs)
        options.check_no_schedule("SGDRCallback")
        self.options = options
        self.task = task
        #: The checkpoint `train()` resumes from (set by `SGDRTrainer`; else `output_dir/checkpoint-<step>`).
        self.resume_from_checkpoint: str | None = None
        self.handler: CycleEndHandler | None = None
        self._trainer: weakref.ReferenceType[Trainer] | None = None
        self._pending_logs: dict[str, float | str] = {}
        #: Whether the loss-scaling check waits for the first batch to set the model's `problem_type`.
        self._loss_check_after_first_step = False
        self._checkpointed_step: int | None = None
        #: The trainer calls `save_checkpoint_state` right before each of its saves (`SGDRTrainer`); a stock
        #: Trainer announces none, so the callback prepares a checkpoint wherever one may follow.
        self._saves_announced = False
        self._training = False
        self._cycle_loss = CycleLoss()

    @staticmethod
    def installed_in(trainer: Trainer) -> SGDRCallback:
        """The `SGDRCallback` of `trainer` (an `SGDRTrainer`, or a stock `Trainer` given one); `ValueError` naming
        the way to its snapshots when it has none."""
        found = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SGDRCallback)]
        if not found:
            raise ValueError(
                f"this {type(trainer).__name__} has no SGDRCallback, so it wrote no snapshots: train with "
                "SGDRTrainer, or a Trainer given callbacks=[SGDRCallback()]; for snapshots written elsewhere use "
                "SnapshotEnsemble.from_pretrained(folder), for checkpoints "
                "SnapshotEnsemble.from_checkpoints(output_dir)"
            )
        return found[0]

    def attach(self, trainer: Trainer, *, saves_announced: bool = False) -> SGDRCallback:
        """Install into `trainer` after its flow control and ahead of its reporting callbacks, and use its
        accelerator and wrapped model (needed to gather sharded weights under FSDP / DeepSpeed). Returns `self`.

        `saves_announced`: `trainer` calls `save_checkpoint_state` right before each checkpoint it writes
        (`SGDRTrainer` does), the one route for the checkpoint state then.
        """
        callbacks = trainer.callback_handler.callbacks
        if any(isinstance(cb, SGDRCallback) and cb is not self for cb in callbacks):
            raise ValueError("this Trainer already has an SGDRCallback; install only one")
        if self in callbacks:
            callbacks.remove(self)
        # After DefaultFlowCallback (which decides `should_save` in on_step_end), before the reporters.
        flow = [i for i, cb in enumerate(callbacks) if isinstance(cb, DefaultFlowCallback)]
        callbacks.insert(flow[0] + 1 if flow else 0, self)
        self._trainer = weakref.ref(trainer)
        self._saves_announced = saves_announced
        return self

    # ------------------------------------------------------------------ training events
    def on_init_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        """A `Trainer(callbacks=[SGDRCallback()])` refuses bad ``"sgdr"`` schedule arguments when it is built."""
        if lr_scheduler is None and SchedulerType(args.lr_scheduler_type).value == SCHEDULER_NAME:
            check_trainer_schedule(args, optimizer, args.lr_scheduler_kwargs)

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ) -> None:
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is None and (getattr(args, "fsdp", None) or getattr(args, "deepspeed", None)):
            raise ValueError(
                "under FSDP / DeepSpeed SGDRCallback needs the Trainer's accelerator to gather the full weights: use "
                "SGDRTrainer, or install the callback with SGDRCallback(...).attach(trainer)"
            )
        if trainer is None and args.n_gpu > 1 and self.options.restart_from == "first":
            raise ValueError(
                f"restart_from='first' on {args.n_gpu} GPUs in one process (nn.DataParallel) must restore the weights "
                "before the Trainer's wrapper copies them to each GPU: use SGDRTrainer, or install the callback with "
                "SGDRCallback(...).attach(trainer); or launch one process per GPU (accelerate launch / torchrun)"
            )
        _configure_monitor(lr_scheduler, args)
        warning = unscaled_loss_warning(model, args, trainer)
        if warning is not None and state.is_world_process_zero:
            logger.warning(warning)
        self._loss_check_after_first_step = warning is None and problem_type_awaits_first_batch(model)
        options = self.options
        snapshot_dir = options.snapshot_folder(args.output_dir)
        self.handler = CycleEndHandler(
            lr_scheduler,
            optimizer,
            trainer.model_wrapped if trainer is not None else model,
            options=options,
            snapshot_dir=snapshot_dir,
            processing_class=processing_class,
            accelerator=trainer.accelerator if trainer is not None else None,
            task=self.task,
            training_info=training_record(
                "transformers.Trainer",
                num_training_steps=state.max_steps,
                gradient_accumulation_steps=args.gradient_accumulation_steps,
                num_processes=args.world_size,
                learning_rate=args.learning_rate,
                per_device_train_batch_size=args.per_device_train_batch_size,
                seed=args.seed,
            ),
            resume_state=self._resume_state(args, state),
        )
        self._pending_logs = {}
        self._checkpointed_step = None
        self._training = True
        self._cycle_loss = CycleLoss.resumed(state.log_history, state.global_step)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._loss_check_after_first_step:
            self._loss_check_after_first_step = False
            self._check_loss_scaling_after_first_batch(args, state, kwargs.get("model"))
        event = self._handler().after_step(global_step=state.global_step, epoch=state.epoch)
        if event is not None:
            control.should_log = True  # the loss of the cycle's last step and the event go out at this step
            self._cycle_loss.cycle_ended_at(state.global_step)
            self._pending_logs.update(event.as_logs())
        self._log_before_checkpoint(args, control)
        if control.should_training_stop or state.global_step >= state.max_steps:
            self._handler().fence()  # the Trainer may load other weights next (load_best_model_at_end)
        if control.should_save:
            self._trainer_may_save(args, state)

    def _check_loss_scaling_after_first_batch(self, args: TrainingArguments, state: TrainerState, model: Any) -> None:
        """A classifier without a `problem_type` has it set by transformers from its first batch: float labels make
        it multi-label, whose loss (BCE) ignores `num_items_in_batch`. Warn then, as `on_train_begin` could not."""
        trainer = self._trainer() if self._trainer is not None else None
        warning = unscaled_loss_warning(model, args, trainer)
        if warning is not None and state.is_world_process_zero:
            logger.warning(
                "the first batch's float labels made transformers set problem_type='multi_label_classification' "
                "(set it in the config to be warned before training): %s",
                warning,
            )

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._log_before_checkpoint(args, control)
        if control.should_save:
            self._trainer_may_save(args, state)

    def _log_before_checkpoint(self, args: TrainingArguments, control: TrainerControl) -> None:
        """Log the loss at a step that may checkpoint (the Trainer logs before it saves): the checkpoint's
        log history then holds every loss window of the cycle so far, and a run resumed from it records the
        cycle's mean loss with its snapshot, as an uninterrupted run does."""
        may_save = control.should_save or (control.should_evaluate and args.save_strategy == "best")
        if may_save and self._handler().snapshot_dir is not None:
            control.should_log = True

    def _trainer_may_save(self, args: TrainingArguments, state: TrainerState) -> None:
        """A stock Trainer may write a checkpoint next (it announces none): prepare it now."""
        if not self._saves_announced:
            self.save_checkpoint_state(self.checkpoint_folder(args.output_dir, state.global_step), state.global_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.handler is None or logs is None or "loss" not in logs:
            return  # only training-loss logs carry the SGDR values
        cycle_mean = self._cycle_loss.add_window(state.global_step, logs["loss"])
        if cycle_mean is not None:
            self.handler.annotate(state.global_step, train_loss=cycle_mean)
        scheduler = self.handler.scheduler
        # The cycle of the step this line logs (as its learning_rate is): at a cycle end, the cycle it completed.
        cycle = scheduler.current_cycle - (1 if scheduler.is_at_cycle_end() else 0)
        extra = {"sgdr/cycle": float(cycle), **self._pending_logs}
        self._pending_logs = {}
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.handler is None or not metrics or not self._training:
            return  # evaluations outside train() (e.g. of snapshots afterwards) are not this run's
        self.handler.fence()  # an early stop may follow, then load_best_model_at_end writes the weights
        if self.handler.observe(metrics, global_step=state.global_step):
            self._pending_logs["sgdr/cycle_extended"] = 1.0
        if args.save_strategy == "best":  # the Trainer may save right after this evaluation
            self._trainer_may_save(args, state)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._trainer_may_save(args, state)  # a save that a callback after this one asked for

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._training = False
        if self.handler is not None:
            self.handler.finish()

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint_state(self, folder: str | os.PathLike[str] | None, global_step: int) -> None:
        """Make the checkpoint `folder` that the Trainer writes next (`checkpoint_folder`) imply its snapshots: wait
        for pending snapshot writes and record updates (raising on every rank if one failed) and store the
        handler's state (running average, star weights) in `folder` (`None`: wait only), once per step (it changes
        only with the next optimizer step).
        """
        if self.handler is None:
            return
        first = self._checkpointed_step != global_step
        self.handler.checkpoint(folder if first else None)
        self._checkpointed_step = global_step

    @staticmethod
    def checkpoint_folder(output_dir: str | os.PathLike[str], global_step: int) -> str:
        """The folder of the checkpoint the Trainer writes at `global_step` (`checkpoint-<global_step>`)."""
        return os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{global_step}")

    @staticmethod
    def last_complete_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
        """The newest `checkpoint-N` in `output_dir` that the Trainer finished writing (it writes
        `trainer_state.json` last); `transformers.trainer_utils.get_last_checkpoint` takes the newest
        folder even when a killed run left it half-written."""
        steps = []
        for name in os.listdir(output_dir) if os.path.isdir(output_dir) else []:
            prefix, _, step = name.partition("-")
            complete = os.path.isfile(os.path.join(output_dir, name, TRAINER_STATE_NAME))
            if prefix == PREFIX_CHECKPOINT_DIR and step.isdigit() and complete:
                steps.append(int(step))
        return os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{max(steps)}") if steps else None

    def _resume_state(self, args: TrainingArguments, state: TrainerState) -> dict[str, Any] | None:
        if (self.options.swa_start is None and self.options.restart_from == "last") or state.global_step == 0:
            return None
        folder = self.resume_from_checkpoint or os.path.join(
            args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        )
        return CycleEndHandler.load_checkpoint_state(folder) if os.path.isdir(folder) else None

    def _handler(self) -> CycleEndHandler:
        if self.handler is None:
            raise RuntimeError("SGDRCallback received a training step before on_train_begin")
        return self.handler


def _eval_name(metric: str) -> str:
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def _configure_monitor(scheduler: Any, args: TrainingArguments) -> None:
    """Point an adaptive scheduler without a `monitor` at `metric_for_best_model` / `greater_is_better`;
    warn when it monitors something else than `metric_for_best_model`."""
    if not callable(getattr(scheduler, "observe", None)):
        return
    monitor = getattr(scheduler, "monitor", None)
    if monitor is not None:
        if args.metric_for_best_model and _eval_name(monitor) != _eval_name(args.metric_for_best_model):
            logger.warning(
                "the adaptive scheduler monitors %s, not metric_for_best_model=%s: its monitor wins",
                monitor,
                args.metric_for_best_model,
            )
        return
    metric = _eval_name(args.metric_for_best_model or "loss")
    scheduler.monitor = metric
    scheduler.greater_is_better = (
        bool(args.greater_is_better) if args.greater_is_better is not None else not metric.endswith("loss")
    )
    logger.info("adaptive SGDR monitors %s (greater_is_better=%s)", metric, scheduler.greater_is_better)


def check_trainer_schedule(
    args: TrainingArguments, optimizer: Any, scheduler_kwargs: Mapping[str, Any], *, budget_known: bool = True
) -> None:
    """Refuse bad ``"sgdr"`` schedule arguments when a Trainer is built, not at `train()`: against the optimizer's
    lrs (or `args.learning_rate` before it exists) and, with `max_steps` (and `budget_known`), the whole budget."""
    budget = args.max_steps if args.max_steps > 0 and budget_known else None
    groups = optimizer.param_groups if optimizer is not None else [{"lr": args.learning_rate}]
    check_scheduler_kwargs(
        scheduler_kwargs,
        lrs=[float(group["lr"]) for group in groups],
        num_warmup_steps=None if budget is None else args.get_warmup_steps(budget),
        num_training_steps=budget,
    )


class CycleLoss:
    """The mean training loss over a cycle from the Trainer's logs, the same quantity the Accelerate helper
    records: each log's loss is a mean over the optimizer steps since the previous log, and a cycle end always
    logs, so the windows of one cycle weighted by their steps give the cycle's mean."""

    def __init__(self, start_step: int = 0) -> None:
        self._last_step = start_step
        self._sum = 0.0
        self._steps = 0
        self._cycle_end: int | None = None

    def cycle_ended_at(self, step: int) -> None:
        """A cycle ended after optimizer step `step` (the log of that step closes its window)."""
        self._cycle_end = step

    @classmethod
    def resumed(cls, log_history: Sequence[Mapping[str, Any]], step: int) -> CycleLoss:
        """The state at `step` of a run resumed there, replayed from its checkpoint's log history (the
        `trainer_state.json` the Trainer writes last): the current cycle's windows survive the resume."""
        cycle_loss = cls()
        for entry in log_history:
            at, loss = entry.get("step"), entry.get("loss")
            if isinstance(at, int) and at <= step and finite_number(loss) is not None:
                if "sgdr/completed_cycle" in entry:
                    cycle_loss.cycle_ended_at(at)
                cycle_loss.add_window(at, loss)
        cycle_loss._last_step = step  # the Trainer's next window starts here (steps not logged before are lost)
        return cycle_loss

    def add_window(self, step: int, loss: float) -> float | None:
        """Add the log at `step`; returns the cycle's mean loss when that log closes a cycle."""
        window, self._last_step = step - self._last_step, step
        if window > 0 and math.isfinite(loss):
            self._sum += float(loss) * window
            self._steps += window
        if step != self._cycle_end:
            return None
        mean = self._sum / self._steps if self._steps else None
        self._sum, self._steps, self._cycle_end = 0.0, 0, None
        return mean
