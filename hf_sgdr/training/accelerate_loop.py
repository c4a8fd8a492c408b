"""SGDR cycle-end work in a plain Accelerate training loop, over the same core as the Trainer callback.

Accelerate's prepared scheduler steps `num_processes` times per optimizer step (unless
`split_batches=True`); this helper keeps the scheduler unprepared instead and steps it once per
real optimizer step: when `accelerator.sync_gradients` (the last micro-batch of a gradient
accumulation) and not `accelerator.optimizer_step_was_skipped` (fp16 overflow). It registers the
scheduler and itself for `accelerator.save_state` / `load_state`, and makes `save_state` wait for
pending snapshot writes, so a checkpoint implies its snapshots. With the checkpoint functions of
`hf_sgdr.training.loop_checkpoints` a resumed run continues exactly (same batches, same dropout masks)::

    scheduler = SGDRScheduler(optimizer, num_cycles=5, num_training_steps=total_steps)  # not prepared
    sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=out, max_snapshots=5, processing_class=tok)
    checkpoint = find_checkpoint(resume_from_checkpoint, out)  # None, a folder, or "latest"
    if checkpoint is not None:
        accelerator.load_state(checkpoint)       # before the first sgdr.step: restores sgdr.global_step too
    resume = ResumePoint.after(sgdr.global_step, steps_per_epoch, accelerator.gradient_accumulation_steps)
    for epoch in range(resume.epoch, num_epochs):
        for batch in epoch_batches(accelerator, train_dataloader, epoch, skip=resume.skip(epoch)):
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            event = sgdr.step(loss=loss)         # every micro-batch; acts on optimizer steps only
            if accelerator.sync_gradients and sgdr.global_step % 500 == 0:
                save_checkpoint(accelerator, out, sgdr.global_step)  # step_500, written atomically
    sgdr.end()                                   # wait for the last snapshot (raises on every rank if it failed)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.scheduler import AcceleratedScheduler

from .arguments import SGDROptions
from .cycle_end import CycleEndEvent, CycleEndHandler, check_event_api, training_record
from .distributed import ProcessSync
from .snapshot_recorder import check_resumed_training_data


class SGDRAccelerateHelper:
    """Steps an SGDR scheduler once per optimizer step and runs the cycle-end work (snapshots,
    optimizer resets, weight averaging) of a plain Accelerate loop.

    Args:
        accelerator: The loop's `Accelerator`.
        model: The (prepared) model.
        scheduler: An SGDR scheduler built on the (prepared) optimizer and NOT passed to
            `accelerator.prepare`.
        output_dir: Snapshots go to `output_dir/snapshots` unless `snapshot_dir` is given.
        options: Snapshot options (`SGDROptions`; schedule fields belong to the scheduler and are refused).
        processing_class: Tokenizer / processor saved once beside the snapshots.
        task: Task name for the manifest.
        num_training_steps: The budget in optimizer steps, recorded in the manifest.
        training_info: More facts for the manifest's `training` section, e.g. the training data under
            `hf_sgdr.snapshots.TRAIN_DATA_KEY` (a `TrainData.to_dict()`).
        register_for_checkpointing: Register the scheduler and this helper with
            `accelerator.register_for_checkpointing` and flush snapshot writes before `save_state`.
        **option_kwargs: `SGDROptions` fields, overriding `options`.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        scheduler: Any,
        *,
        output_dir: str | os.PathLike[str] | None = None,
        options: SGDROptions | None = None,
        processing_class: Any = None,
        task: str | None = None,
        num_training_steps: int | None = None,
        training_info: Mapping[str, Any] | None = None,
        register_for_checkpointing: bool = True,
        **option_kwargs: Any,
    ) -> None:
        if isinstance(scheduler, AcceleratedScheduler):
            raise ValueError(
                "pass the SGDR scheduler unprepared (not through accelerator.prepare): a prepared scheduler steps "
                "num_processes times per optimizer step; SGDRAccelerateHelper steps it once per optimizer step"
            )
        check_event_api(scheduler)
        self.options = (options or SGDROptions()).sgdr_options(**option_kwargs)
        self.options.check_no_schedule("SGDRAccelerateHelper")
        self.snapshot_dir = self.options.snapshot_folder(output_dir)
        self.accelerator = accelerator
        self.model = model
        self.scheduler = scheduler
        self.processing_class = processing_class
        self.task = task
        self.num_training_steps = num_training_steps
        self.training_info = dict(training_info or {})
        #: Optimizer steps taken (skipped fp16 steps included, as the Trainer counts them).
        self.global_step = 0
        self.handler: CycleEndHandler | None = None
        self._resume_state: dict[str, Any] | None = None
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        if register_for_checkpointing:
            accelerator.register_for_checkpointing(scheduler, self)
            accelerator.register_save_state_pre_hook(self._before_save_state)

    @property
    def events(self) -> list[CycleEndEvent]:
        """The cycle ends seen so far in this run."""
        return self.handler.events if self.handler is not None else []

    def step(self, *, loss: torch.Tensor | float | None = None, epoch: float | None = None) -> CycleEndEvent | None:
        """Call after every micro-batch's `optimizer.step()`; steps the scheduler on real optimizer steps.

        `loss` (this micro-batch's loss) enters the mean training loss recorded with the cycle's
        snapshot; it is summed on the device and read once per cycle. Returns the event when a
        cycle ended at this step.
        """
        if loss is not None:
            value = loss.detach().float() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
            self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
            self._loss_count += 1
        if not self.accelerator.sync_gradients:
            return None
        handler = self._handler()
        self.global_step += 1
        stepped = not self.accelerator.optimizer_step_was_skipped
        if stepped:
            self.scheduler.step()
        train_loss = self._take_mean_loss() if stepped and self.scheduler.is_at_cycle_end() else None
        return handler.after_step(global_step=self.global_step, epoch=epoch, train_loss=train_loss)

    def evaluate(self, metrics: dict[str, float]) -> bool:
        """Record an evaluation (adaptive schedulers, the snapshot taken at this step); True if the
        scheduler lengthened the current cycle.
        """
        return self._handler().observe(metrics, global_step=self.global_step)

    def end(self) -> None:
        """Wait for every snapshot write; raises `SnapshotWriteError` on every process if one failed."""
        if self.handler is not None:
            self.handler.finish()

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """The step count, the running weight average and the cycle's loss so far (for `accelerator.save_state`)."""
        handler_state = self.handler.state_dict() if self.handler is not None else self._resume_state
        loss_sum = None if self._loss_sum is None else float(self._loss_sum.item())
        return {
            "global_step": self.global_step,
            "handler": handler_state,
            "loss_sum": loss_sum,
            "loss_count": self._loss_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; must come before the first `step()` of the resumed run. Collective, as
        `accelerator.load_state` calls it on every process: a resumed run recording other held-out training data
        than the listed snapshots' raises `ResumeMismatchError` on each."""
        if self.handler is not None:
            raise RuntimeError(
                "load the checkpoint (accelerator.load_state) before the first SGDRAccelerateHelper.step"
            )
        self.global_step = int(state["global_step"])
        self._resume_state = state["handler"]
        loss_sum = state.get("loss_sum")  # float32 on save, so the sum continues bit for bit
        self._loss_sum = None if loss_sum is None else torch.tensor(loss_sum, dtype=torch.float32)
        self._loss_count = int(state.get("loss_count", 0))
        if self.snapshot_dir is not None and self.global_step > 0:  # refused here, before the resumed run trains
            check_resumed_training_data(self.snapshot_dir, self._training_facts(), ProcessSync(), warn=False)

    def _before_save_state(self, *args: Any) -> None:
        if self.handler is not None:
            self.handler.checkpoint()

    # ------------------------------------------------------------------ internals
    def _handler(self) -> CycleEndHandler:
        if self.handler is None:
            accelerator = self.accelerator
            self.handler = CycleEndHandler(
                self.scheduler,
                self.scheduler.optimizer,
                self.model,
                options=self.options,
                snapshot_dir=self.snapshot_dir,
                processing_class=self.processing_class,
                accelerator=accelerator,
                task=self.task,
                training_info=self._training_facts(),
                resume_state=self._resume_state,
            )
        return self.handler

    def _training_facts(self) -> dict[str, Any]:
        """The manifest's `training` section: the loop's facts and the caller's `training_info`."""
        accelerator = self.accelerator
        return (
            training_record(
                "accelerate",
                num_training_steps=self.num_training_steps,
                gradient_accumulation_steps=accelerator.gradient_accumulation_steps,
                num_processes=accelerator.num_processes,
                learning_rate=self.scheduler.base_lrs[0] if getattr(self.scheduler, "base_lrs", None) else None,
            )
            | self.training_info
        )

    def _take_mean_loss(self) -> float | None:
        if self._loss_sum is None or not self._loss_count:
            return None
        mean = float(self._loss_sum.item()) / self._loss_count
        self._loss_sum, self._loss_count = None, 0
        return mean
