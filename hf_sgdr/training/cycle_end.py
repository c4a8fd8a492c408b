"""The end of an SGDR cycle, for any training loop.

`CycleEndHandler.after_step()` is called once per optimizer step, after the scheduler stepped. It asks the
scheduler (its own step counter, the one source of truth) whether a cycle just ended, and then hands the cycle
end to the parts that act on it, each with one job: `averaging.CycleAverager` (the running mean over the
cycle's tail, `swa_start`), `snapshot_recorder.SnapshotRecorder` (the cycle's snapshot, written in the
background) and `star_restart.StarRestart` (`restart_from="first"`: the weights back to the first cycle's end at
every later restart); it returns a `CycleEndEvent` for the loop to log. The optimizer-state reset at restarts
has one owner, the scheduler (`reset_optimizer_state`, done in its `step()`); options that ask for it switch
the scheduler's on. The Trainer callback and the plain-Accelerate helper are thin layers over the handler;
nothing here knows which loop calls it. Cycle boundaries are never cached: a scheduler that lengthens a cycle
(`AdaptiveSGDR`) moves the next event.

A training checkpoint carries the parts' state (`STATE_NAME`: the running average, the star weights), written
by `checkpoint()`, the one route for it, which first waits for the pending snapshot writes, so that a
checkpoint implies its snapshots.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..atomic import atomic_write_bytes
from ..optimizer_reset import check_resettable
from ..snapshot_format.layout import snapshot_name
from ..snapshot_format.manifest import SnapshotManifest, SnapshotRecord
from ..snapshot_format.model_description import describe_model, unwrap_model
from ..validation import finite_number
from .averaging import CycleAverager
from .distributed import ProcessSync
from .snapshot_recorder import SnapshotRecorder
from .staging import CudaStager
from .star_restart import StarRestart
from .weights import split_parameter_name, uses_sharded_weights

if TYPE_CHECKING:
    from .arguments import SGDROptions

logger = logging.getLogger(__name__)

#: What a scheduler must offer for the cycle-end events (`SGDRScheduler`, `AdaptiveSGDR`).
EVENT_API = ("last_epoch", "position", "is_at_cycle_end", "is_restart_step", "completed_cycle")
#: File in a training checkpoint folder that holds the handler's state (running average, star anchor).
STATE_NAME = "sgdr_state.pt"
_STATE_FORMAT = 1


def check_event_api(scheduler: Any) -> None:
    """Raise `TypeError` unless `scheduler` answers the SGDR event queries."""
    missing = [name for name in EVENT_API if not hasattr(scheduler, name)]
    if missing:
        raise TypeError(
            f"SGDR cycle events need an SGDR scheduler (hf_sgdr.SGDRScheduler, AdaptiveSGDR, or "
            f"lr_scheduler_type='sgdr'); {type(scheduler).__name__} lacks {', '.join(missing)}"
        )


def training_record(
    loop: str,
    *,
    num_training_steps: int | None,
    gradient_accumulation_steps: int,
    num_processes: int,
    learning_rate: float | None = None,
    per_device_train_batch_size: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """The manifest's `training` facts, the same keys for every loop (`None` where a loop does not know)."""
    return {
        "loop": loop,
        "num_training_steps": None if num_training_steps is None else int(num_training_steps),
        "gradient_accumulation_steps": int(gradient_accumulation_steps),
        "per_device_train_batch_size": None
        if per_device_train_batch_size is None
        else int(per_device_train_batch_size),
        "num_processes": int(num_processes),
        "learning_rate": None if learning_rate is None else float(learning_rate),
        "seed": None if seed is None else int(seed),
    }


@dataclass(frozen=True)
class CycleEndEvent:
    """One cycle end, as the loop should report it.

    `cycle` is the cycle that ended; `lr` the learning rate of each param group at its last step;
    `snapshot` the snapshot folder (written in the background; `None` without snapshots);
    `restart` whether a new cycle begins (not the end of the last cycle of a `cycle_limit`);
    `snapshot_stall_s` the seconds the training thread spent on the snapshot (waiting for the previous
    write, then copying it or, on a GPU, launching the copy; `None` without snapshots).
    """

    cycle: int
    global_step: int
    scheduler_step: int
    restart: bool
    optimizer_reset: bool
    lr: tuple[float, ...]
    snapshot: str | None
    averaged: bool
    num_averaged: int | None
    weights_restored: bool = False
    snapshot_stall_s: float | None = None

    def as_logs(self) -> dict[str, float | str]:
        """The event as Trainer-style log values (`sgdr/...`)."""
        logs: dict[str, float | str] = {
            "sgdr/completed_cycle": float(self.cycle),
            "sgdr/restart": float(self.restart),
            "sgdr/optimizer_reset": float(self.optimizer_reset),
            "sgdr/weights_restored": float(self.weights_restored),
        }
        if self.snapshot is not None:
            logs["sgdr/snapshot"] = self.snapshot
        if self.snapshot_stall_s is not None:
            logs["sgdr/snapshot_stall_ms"] = self.snapshot_stall_s * 1e3
        return logs


class CycleEndHandler:
    """The cycle ends of one training run: snapshots, weight averaging, star restarts and the events.

    Create it once the model, optimizer and scheduler are final (and a checkpoint, if any, is
    loaded), call `after_step()` after every optimizer step, `observe()` after every evaluation,
    `checkpoint()` when the loop saves a checkpoint, and `finish()` at the end. Every process of a
    distributed run calls these methods at the same points; only the main process writes.

    Args:
        scheduler: An SGDR scheduler (see `EVENT_API`), stepped once per optimizer step.
        optimizer: The optimizer (plain or Accelerate-wrapped) to reset at restarts.
        model: The model being trained (wrappers allowed).
        options: The run's validated `SGDROptions`: `max_snapshots`, `swa_start` (average the weights over the
            cycle from this fraction on), `restart_from` ("last", SGDR: each cycle continues from the previous
            one's end; "first", "star", Sadrtdinov et al. 2023: at every restart after the first cycle the
            trainable weights go back to the first cycle's end) and `resets_optimizer_state` (switches the
            scheduler's `reset_optimizer_state` on). Schedule fields are not read here.
        snapshot_dir: Folder for the snapshots and `manifest.json`; `None` writes no snapshots.
        processing_class: Tokenizer / processor to save once beside the snapshots.
        accelerator: The `Accelerator`, so that sharded weights are gathered (FSDP, ZeRO-3).
        task: Task name for the manifest (default: derived from the model's Auto class).
        training_info: Extra facts for the manifest's `training` section (budget, batch sizes...).
        resume_state: A `state_dict()` (or the content of `STATE_NAME`) to continue from.
    """

    def __init__(
        self,
        scheduler: Any,
        optimizer: Any,
        model: torch.nn.Module,
        *,
        options: SGDROptions,
        snapshot_dir: str | Path | None = None,
        processing_class: Any = None,
        accelerator: Any = None,
        task: str | None = None,
        training_info: Mapping[str, Any] | None = None,
        resume_state: Mapping[str, Any] | None = None,
    ) -> None:
        check_event_api(scheduler)
        sharded = uses_sharded_weights(accelerator)
        _refuse_sharded(options, sharded)
        _refuse_ungathered_split(model, sharded, options, snapshots=snapshot_dir is not None)
        if options.resets_optimizer_state:
            _switch_on_scheduler_reset(scheduler, optimizer)
        self.scheduler = scheduler
        self.optimizer = optimizer
        self.model = model
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self.events: list[CycleEndEvent] = []
        self.sync = ProcessSync()
        #: Launches the snapshot copies off the training thread when the weights are on one CUDA device (else
        #: `None`: the blocking copy; sharded weights are gathered by a collective).
        self.stager = None if sharded else CudaStager.for_model(unwrap_model(model), optimizer)
        self.averager = CycleAverager(options.swa_start) if options.swa_start is not None else None
        self.star = StarRestart(model, self.stager) if options.restart_from == "first" else None
        self._seen = int(scheduler.last_epoch)
        self._cycle_start = scheduler.position().start
        self._lrs = self._current_lrs()
        self._resume(resume_state)
        self.recorder: SnapshotRecorder | None = None
        if self.snapshot_dir is not None:
            self.recorder = SnapshotRecorder(
                self.snapshot_dir,
                model,
                description=describe_model(model, task),
                schedule=self._schedule(),
                training={
                    **(training_info or {}),
                    "reset_optimizer_state": self._scheduler_resets,
                    "restart_from": options.restart_from,
                    "swa_start": options.swa_start,
                    "max_snapshots": options.max_snapshots,
                    "scheduler": type(scheduler).__name__,
                },
                resumed=self._seen > 0,
                sync=self.sync,
                stager=self.stager,
                accelerator=accelerator,
                sharded=sharded,
                max_snapshots=options.max_snapshots,
                processing_class=processing_class,
            )

    # ------------------------------------------------------------------ set-up
    def _resume(self, resume_state: Mapping[str, Any] | None) -> None:
        """Continue from `resume_state`; without one, warn or refuse where a resumed run needs it."""
        if resume_state is not None:
            self.load_state_dict(resume_state)
            return
        if self.averager is not None and self._seen > 0:
            logger.warning(
                "resuming at scheduler step %d without the running weight average (no %s in the checkpoint): "
                "the current cycle's averaged snapshot will average fewer steps",
                self._seen,
                STATE_NAME,
            )
        if self.star is not None and self._past_first_cycle:
            raise ValueError(
                f"resuming a restart_from='first' run at scheduler step {self._seen} needs the first cycle's weights, "
                f"which the checkpoint's {STATE_NAME} holds; resume from a checkpoint that has it"
            )

    def _schedule(self) -> dict[str, Any] | None:
        schedule = getattr(self.scheduler, "schedule", None)
        return schedule.to_dict() if hasattr(schedule, "to_dict") else None

    @property
    def _scheduler_resets(self) -> bool:
        return bool(getattr(self.scheduler, "reset_optimizer_state", False))

    @property
    def _past_first_cycle(self) -> bool:
        """True once the first cycle has ended (a star restart then needs the first cycle's weights)."""
        return self._seen > 0 and self.scheduler.position().cycle >= 1

    @property
    def num_optimizer_resets(self) -> int:
        """Optimizer-state resets so far (done by the scheduler, their one owner)."""
        return int(getattr(self.scheduler, "num_optimizer_resets", 0))

    def _current_lrs(self) -> list[Any]:
        """The lrs the next optimizer step uses (kept unconverted: a tensor lr would sync the device)."""
        get_last_lr = getattr(self.scheduler, "get_last_lr", None)
        if callable(get_last_lr):
            return list(get_last_lr())
        return [group["lr"] for group in self.optimizer.param_groups]

    # ------------------------------------------------------------------ per step
    def after_step(
        self, *, global_step: int, epoch: float | None = None, train_loss: float | None = None
    ) -> CycleEndEvent | None:
        """Call once per optimizer step, after `scheduler.step()`; returns the event if a cycle just ended.

        A call where the scheduler did not advance (the optimizer skipped the step on an fp16
        overflow) does nothing. `train_loss` is recorded with a snapshot taken at this step.
        """
        t = int(self.scheduler.last_epoch)
        if t == self._seen:
            return None
        if t != self._seen + 1:
            raise RuntimeError(
                f"the scheduler advanced {t - self._seen} steps between two calls (from {self._seen} to {t}); step "
                "it exactly once per optimizer step (an Accelerate-prepared scheduler steps num_processes times)"
            )
        self._seen = t
        position = self.scheduler.position()
        at_end = bool(self.scheduler.is_at_cycle_end())
        if self.averager is not None:
            model = unwrap_model(self.model)
            if at_end:
                length = t - self._cycle_start
                self.averager.update(model, self.scheduler.completed_cycle, length, length)
            elif position.length is not None and position.t_cur > 0:
                self.averager.update(model, position.cycle, position.length, position.t_cur)
        event = self._end_cycle(t, global_step, epoch, train_loss) if at_end else None
        self._cycle_start = position.start
        self._lrs = self._current_lrs()
        return event

    def _end_cycle(self, t: int, global_step: int, epoch: float | None, train_loss: float | None) -> CycleEndEvent:
        cycle = int(self.scheduler.completed_cycle)
        restart = bool(self.scheduler.is_restart_step())
        reset = restart and self._scheduler_resets  # the scheduler has just done it, in its step()
        lrs = tuple(float(lr) for lr in self._lrs)
        averager = self.averager
        averaged = averager is not None and averager.count > 0
        num_averaged = averager.count if averager is not None and averaged else None
        path = stall = None
        if self.recorder is not None:
            name = snapshot_name(cycle)
            path = str(self.recorder.snapshot_dir / name)
            stall = self.recorder.record(
                SnapshotRecord(
                    name=name,
                    cycle=cycle,
                    global_step=int(global_step),
                    scheduler_step=t,
                    epoch=None if epoch is None else float(epoch),
                    lr=list(lrs),
                    train_loss=finite_number(train_loss),
                    averaged=averaged,
                    num_averaged=num_averaged,
                ),
                averager.averages if averager is not None and averaged else None,
            )
        if averager is not None:
            averager.reset()
        restored = restart and self.star is not None and self.star.at_restart(cycle)
        event = CycleEndEvent(
            cycle, int(global_step), t, restart, reset, lrs, path, averaged, num_averaged, restored, stall
        )
        self.events.append(event)
        if self.sync.is_main:
            logger.info(
                "SGDR cycle %d ended at step %d (lr %s)%s%s%s%s",
                cycle,
                global_step,
                ", ".join(f"{lr:.3g}" for lr in lrs),
                f", averaged over {num_averaged} steps" if averaged else "",
                ", optimizer state reset" if reset else "",
                ", weights back to the first cycle's end" if restored else "",
                f": snapshot {path} (training thread {stall * 1e3:.1f} ms)" if path and stall is not None else "",
            )
        return event

    def fence(self) -> None:
        """Make later work on the current CUDA stream wait for the snapshot copies in flight. Call it before
        writing the weights in place other than by an optimizer step or a star restore (which do it
        themselves), e.g. before loading other weights into the model at the end of training."""
        if self.stager is not None:
            self.stager.fence()

    # ------------------------------------------------------------------ evaluations and annotations
    def observe(self, metrics: Mapping[str, Any], *, global_step: int) -> bool:
        """Record one evaluation: feed it to an adaptive scheduler (`observe`), attach it to a snapshot.

        Returns True when the scheduler lengthened the current cycle. Metrics are attached to the
        snapshot taken at `global_step`, unless that snapshot holds averaged weights (the evaluation
        measured the raw ones).
        """
        finite = {key: finite_number(value) for key, value in metrics.items() if key != "epoch"}
        numbers = {key: value for key, value in finite.items() if value is not None}
        observe = getattr(self.scheduler, "observe", None)
        extended = bool(observe(dict(numbers))) if callable(observe) else False
        self.annotate(global_step, eval_metrics=numbers)
        return extended

    def annotate(
        self, global_step: int, *, train_loss: float | None = None, eval_metrics: Mapping[str, float] | None = None
    ) -> None:
        """Attach a training loss or eval metrics to the snapshot taken at `global_step` (if any)."""
        if self.recorder is not None:
            self.recorder.annotate(global_step, train_loss=finite_number(train_loss), eval_metrics=eval_metrics)

    # ------------------------------------------------------------------ checkpoints and the end
    def state_dict(self) -> dict[str, Any]:
        """The state a training checkpoint must carry (plain values and CPU tensors)."""
        star = self.star.state_dict() if self.star is not None else {"anchor": None, "restore_pending": False}
        return {
            "format": _STATE_FORMAT,
            "scheduler_step": self._seen,
            "averager": self.averager.state_dict() if self.averager is not None else None,
            **star,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict()` taken at the scheduler's current step."""
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"unsupported SGDR handler state format {state.get('format')!r}")
        if int(state["scheduler_step"]) != self._seen:
            raise ValueError(
                f"the SGDR handler state was saved at scheduler step {state['scheduler_step']} but the scheduler is "
                f"at step {self._seen}; load the state of the same checkpoint"
            )
        if self.averager is not None and state.get("averager") is not None:
            self.averager.load_state_dict(state["averager"])
        if self.star is not None:
            if state.get("anchor") is None and self._past_first_cycle:
                raise ValueError(f"this {STATE_NAME} holds no first-cycle weights for restart_from='first'")
            self.star.load_state_dict(state)

    def checkpoint(self, folder: str | Path | None = None) -> None:
        """At a checkpoint: wait for pending writes (raising everywhere on failure) and, on the main
        process, save the state into `folder/STATE_NAME` (the folder made if needed). A checkpoint then
        implies its snapshots.
        """
        if self.recorder is not None:
            self.recorder.wait()
        if folder is not None and self.sync.is_main and self.needs_checkpoint_state:
            buffer = io.BytesIO()
            torch.save(self.state_dict(), buffer)
            Path(folder).mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(Path(folder) / STATE_NAME, buffer.getvalue())

    @property
    def needs_checkpoint_state(self) -> bool:
        """Whether a training checkpoint must carry `STATE_NAME` (a running average or star weights)."""
        return self.averager is not None or self.star is not None

    def finish(self) -> None:
        """Wait for every write and raise on every rank if one failed; later annotations write at once."""
        if self.star is not None:
            self.star.close()
        if self.stager is not None:
            self.stager.close()
        if self.recorder is not None:
            self.recorder.finish()

    def manifest(self) -> SnapshotManifest | None:
        """The manifest as written so far (main process; `None` elsewhere or without snapshots)."""
        return self.recorder.manifest() if self.recorder is not None else None

    @staticmethod
    def load_checkpoint_state(folder: str | Path) -> dict[str, Any] | None:
        """The handler state saved in a checkpoint folder by `checkpoint()`, or `None` if there is none."""
        path = Path(folder) / STATE_NAME
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)


def _refuse_sharded(options: SGDROptions, sharded: bool) -> None:
    """Refuse what needs the full weights on one process when they are sharded (FSDP / DeepSpeed)."""
    if not sharded:
        return
    if options.restart_from == "first":
        raise ValueError(
            "restart_from='first' is not supported with sharded weights (FSDP / DeepSpeed): each process would "
            "have to keep its own shards of the first cycle's weights; use restart_from='last'"
        )
    if options.swa_start is not None:
        raise ValueError(
            f"swa_start={options.swa_start!r} is not supported with sharded weights (FSDP / DeepSpeed): the running "
            "average needs the full parameters on one process; set swa_start=None"
        )


def _refuse_ungathered_split(model: torch.nn.Module, sharded: bool, options: SGDROptions, snapshots: bool) -> None:
    """Refuse what needs the full weights when they are split across processes and no gather here joins them
    (tensor parallelism: `DTensor` parameters outside FSDP / DeepSpeed): a snapshot, the star restart's copy or
    the SWA average would hold one process's part. Checked before training, not at the first cycle end."""
    uses = [
        use
        for use, wanted in (
            ("snapshots", snapshots),
            ("restart_from='first'", options.restart_from == "first"),
            (f"swa_start={options.swa_start!r}", options.swa_start is not None),
        )
        if wanted
    ]
    name = None if sharded or not uses else split_parameter_name(model)
    if name is not None:
        raise ValueError(
            f"{' and '.join(uses)} {'need' if len(uses) > 1 else 'needs'} the full weights, but they are split "
            f"across processes ({name!r} is a DTensor: tensor parallelism, or FSDP2 without the Accelerator) and "
            "only the Accelerator's DDP, FSDP and DeepSpeed weights are gathered; train without splitting them, "
            "or with save_snapshots=False, restart_from='last' and swa_start=None"
        )


def _switch_on_scheduler_reset(scheduler: Any, optimizer: Any) -> None:
    """Make the scheduler, the one owner of the optimizer reset, reset the state at every restart."""
    if not hasattr(scheduler, "reset_optimizer_state"):
        raise TypeError(
            f"resetting the optimizer state at restarts needs an SGDR scheduler that does it "
            f"(hf_sgdr.SGDRScheduler); {type(scheduler).__name__} has no reset_optimizer_state"
        )
    if not scheduler.reset_optimizer_state:
        check_resettable(optimizer)
        scheduler.reset_optimizer_state = True
