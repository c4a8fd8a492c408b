"""The loop-agnostic core: what happens at the end of an SGDR cycle, for any training loop.

`CycleEndHandler.after_step()` is called once per optimizer step, after the scheduler stepped. It
asks the scheduler (its own step counter, the one source of truth) whether a cycle just ended and
then (a) writes the cycle's snapshot (the weights after its last, lowest-lr step, or their running
average with `swa_start`) in the background, (b) with `restart_from="first"`, puts the weights back to
the first cycle's end at every later restart (at the next training-mode forward, so that evaluations at the
cycle end see the cycle's own weights), and (c) returns a `CycleEndEvent` for the loop to log.
The optimizer-state reset at restarts has one owner, the scheduler (`reset_optimizer_state`, done in its
`step()`); asking the handler for it switches the scheduler's on. The Trainer
callback and the plain-Accelerate helper are thin layers over it; nothing here knows which loop
calls it. Cycle boundaries are never cached: a scheduler that lengthens a cycle (`AdaptiveSGDR`)
moves the next event.

Resume: a snapshot already listed in the manifest for the same cycle and scheduler step is not
written again; the running average travels in the training checkpoint (`checkpoint()` /
`state_dict()`).
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..atomic import atomic_write_bytes
from ..optimizer_reset import check_resettable
from ..snapshot_format.layout import snapshot_name
from ..snapshot_format.manifest import ManifestError, SnapshotManifest, SnapshotRecord, new_manifest
from ..snapshot_format.model_description import describe_model, unwrap_model
from ..snapshot_format.tensors import cpu_copy
from .averaging import CycleAverager
from .distributed import ProcessSync, SnapshotWriteError
from .staging import CudaStager, StagedCopy
from .weights import host_buffers, join_weight_gather, save_weights, stage_weights, uses_sharded_weights
from .writer import SnapshotWriter

if TYPE_CHECKING:
    from .arguments import SGDROptions

logger = logging.getLogger(__name__)

#: What a scheduler must offer for the cycle-end events (`SGDRScheduler`, `AdaptiveSGDR`).
EVENT_API = ("last_epoch", "position", "is_at_cycle_end", "is_restart_step", "completed_cycle")
#: File in a training checkpoint folder that holds the handler's state (running average, star anchor).
STATE_NAME = "sgdr_state.pt"
_STATE_FORMAT = 1
#: A wait for the previous snapshot's write longer than this is logged as a warning (else at INFO).
SLOW_WRITE_WAIT_S = 1.0


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
            if isinstance(at, int) and at <= step and _finite(loss) is not None:
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
    """Snapshots, optimizer resets and weight averaging at SGDR cycle ends, for one training run.

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
            scheduler's `reset_optimizer_state` on; the scheduler resets in its `step()`). Schedule fields are
            not read here.
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
        restart_from, swa_start, max_snapshots = options.restart_from, options.swa_start, options.max_snapshots
        self.scheduler = scheduler
        self.optimizer = optimizer
        self.model = model
        self.accelerator = accelerator
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self.restart_from = restart_from
        self._sharded = uses_sharded_weights(accelerator)
        if restart_from == "first" and self._sharded:
            raise ValueError(
                "restart_from='first' is not supported with sharded weights (FSDP / DeepSpeed): each process would "
                "have to keep its own shards of the first cycle's weights; use restart_from='last'"
            )
        if options.resets_optimizer_state:
            _switch_on_scheduler_reset(scheduler, optimizer)
        self.events: list[CycleEndEvent] = []
        self.sync = ProcessSync()
        #: Launches the snapshot copies off the training thread when the weights are on one CUDA device (else
        #: `None`: the blocking copy; sharded weights are gathered by a collective, as before).
        self.stager = None if self._sharded else CudaStager.for_model(unwrap_model(model), optimizer)
        #: Host copy of the trainable weights at the first cycle's end (`restart_from="first"`).
        self._anchor: StagedCopy | None = None
        #: A star restart waiting for the next training forward (so that evaluations and checkpoints taken at
        #: the cycle end still see the cycle's own weights).
        self._restore_pending = False
        self._restore_hook = (
            unwrap_model(model).register_forward_pre_hook(self._restore_before_training_forward)
            if restart_from == "first"
            else None
        )
        self._seen = int(scheduler.last_epoch)
        self._cycle_start = scheduler.position().start
        self._lrs = self._current_lrs()
        self._snapshot_at_step: dict[int, tuple[str, bool]] = {}
        self._written: dict[str, int] = {}
        self._buffers: dict[str, torch.Tensor] | None = None  # the last snapshot's CPU copy, reused
        self._finished = False

        self.averager: CycleAverager | None = None
        if swa_start is not None:
            if self._sharded:
                raise ValueError(
                    f"swa_start={swa_start!r} is not supported with sharded weights (FSDP / DeepSpeed): the running "
                    "average needs the full parameters on one process; set swa_start=None"
                )
            self.averager = CycleAverager(swa_start)
            if resume_state is None and self._seen > 0:
                logger.warning(
                    "resuming at scheduler step %d without the running weight average (no %s in the checkpoint): "
                    "the current cycle's averaged snapshot will average fewer steps",
                    self._seen,
                    STATE_NAME,
                )
        if resume_state is not None:
            self.load_state_dict(resume_state)
        elif restart_from == "first" and self._past_first_cycle:
            raise ValueError(
                f"resuming a restart_from='first' run at scheduler step {self._seen} needs the first cycle's weights, "
                f"which the checkpoint's {STATE_NAME} holds; resume from a checkpoint that has it"
            )

        self.writer: SnapshotWriter | None = None
        if self.snapshot_dir is not None and self.sync.is_main:
            self.writer = self._open_writer(max_snapshots, swa_start, processing_class, task, dict(training_info or {}))
            self._buffers = host_buffers(self.model, self.stager, self.accelerator)

    # ------------------------------------------------------------------ set-up
    def _open_writer(
        self,
        max_snapshots: int | None,
        swa_start: float | None,
        processing_class: Any,
        task: str | None,
        training_info: dict[str, Any],
    ) -> SnapshotWriter:
        assert self.snapshot_dir is not None
        previous = _read_manifest(self.snapshot_dir)
        resumed = self._seen > 0
        records = list(previous.snapshots) if previous is not None and resumed else []
        obsolete = [r.name for r in previous.snapshots] if previous is not None and not resumed else []
        if obsolete:
            logger.warning(
                "starting a new run in %s: the snapshots of the previous run there (%s) are replaced",
                self.snapshot_dir,
                ", ".join(obsolete),
            )
        description = describe_model(self.model, task)
        schedule = getattr(self.scheduler, "schedule", None)
        manifest = new_manifest(
            description,
            schedule=schedule.to_dict() if hasattr(schedule, "to_dict") else None,
            training={
                **training_info,
                "reset_optimizer_state": self._scheduler_resets,
                "restart_from": self.restart_from,
                "swa_start": swa_start,
                "max_snapshots": max_snapshots,
                "scheduler": type(self.scheduler).__name__,
            },
            snapshots=records,
        )
        self._written = {r.name: r.scheduler_step for r in records}
        writer = SnapshotWriter(self.snapshot_dir, manifest, max_snapshots=max_snapshots, obsolete=obsolete)
        if processing_class is not None:
            writer.save_processor(processing_class)
        return writer

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
        if self.snapshot_dir is not None:
            name = snapshot_name(cycle)
            path = str(self.snapshot_dir / name)
            stall = self._write_snapshot(
                SnapshotRecord(
                    name=name,
                    cycle=cycle,
                    global_step=int(global_step),
                    scheduler_step=t,
                    epoch=None if epoch is None else float(epoch),
                    lr=list(lrs),
                    train_loss=_finite(train_loss),
                    averaged=averaged,
                    num_averaged=num_averaged,
                ),
                averager.averages if averager is not None and averaged else None,
            )
        if averager is not None:
            averager.reset()
        restored = restart and self.restart_from == "first" and self._restart_from_first(cycle)
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

    def _trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in unwrap_model(self.model).named_parameters() if p.requires_grad}

    def _restart_from_first(self, cycle: int) -> bool:
        """Keep the first cycle's weights at its end; schedule their return at every later restart (True then).

        Only trainable parameters are kept and restored (the adapter of a LoRA model, all weights of a full
        fine-tune), on every process alike. The weights go back at the next training-mode forward, so an
        evaluation or a checkpoint at the cycle end still sees the cycle's own weights (as its snapshot does).
        """
        if cycle == 0:
            trainable = {n: p.detach() for n, p in self._trainable().items()}
            staged = self.stager is not None and self.stager.handles(trainable)
            self._anchor = self.stager.stage(trainable) if staged else StagedCopy(cpu_copy(trainable))
            return False
        if self._anchor is None or self._anchor.tensors.keys() != self._trainable().keys():
            raise RuntimeError(
                "restart_from='first' has no copy of the first cycle's trainable weights to restart from (the model's "
                "trainable parameters changed, or the run resumed without its checkpoint state)"
            )
        self._restore_pending = True
        return True

    def _restore_before_training_forward(self, module: torch.nn.Module, args: Any) -> None:
        """Forward pre-hook: put the first cycle's weights back before the first training step of a new cycle."""
        if not (self._restore_pending and module.training):
            return
        assert self._anchor is not None
        if self.stager is not None:
            self.stager.fence()  # a snapshot copy of these weights may still be in flight
        self._anchor.order_before_current_stream()
        with torch.no_grad():
            for name, parameter in self._trainable().items():
                parameter.copy_(self._anchor.tensors[name], non_blocking=True)
        self._restore_pending = False

    def _write_snapshot(self, record: SnapshotRecord, averages: dict[str, torch.Tensor] | None) -> float:
        """Wait for the previous write (raising its error everywhere), then copy and hand over this one.

        Returns the seconds the training thread spent here."""
        start = time.perf_counter()
        busy = self.writer is not None and self.writer.busy()
        after_snapshot = bool(self._written)
        error = self.writer.wait() if self.writer is not None else None
        if busy:
            waited = time.perf_counter() - start
            logger.log(
                logging.WARNING if waited >= SLOW_WRITE_WAIT_S else logging.INFO,
                "snapshot %s waited %.1f ms for %s",
                record.name,
                waited * 1e3,
                "the previous snapshot's write to finish (its host buffers are reused): snapshot writes take "
                "longer than a cycle"
                if after_snapshot
                else "the snapshot writer to set up the folder",
            )
        already = self.writer is not None and self._written.get(record.name) == record.scheduler_step
        skip = self.sync.raise_on_failure(error, already)
        self._snapshot_at_step[record.global_step] = (record.name, record.averaged)
        if skip:
            logger.info("snapshot %s is already in the manifest (resumed run): not written again", record.name)
            return time.perf_counter() - start
        if not self.sync.is_main:
            if self._sharded:
                join_weight_gather(self.model, self.accelerator)
            return time.perf_counter() - start
        # The previous write has finished (waited for above): its host copy is free to be overwritten.
        staged = stage_weights(self.model, self.stager, self.accelerator, replace=averages, reuse=self._buffers)
        if self.writer is not None:
            model = self.model

            def save(folder: Path) -> None:
                staged.wait()  # the copy may still be in flight on the GPU
                save_weights(model, folder, staged.tensors)

            self.writer.submit_snapshot(record, save)
            self._written[record.name] = record.scheduler_step
            self._buffers = staged.tensors
        return time.perf_counter() - start

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
        numbers = {key: float(value) for key, value in metrics.items() if key != "epoch" and _finite(value) is not None}
        observe = getattr(self.scheduler, "observe", None)
        extended = bool(observe(dict(numbers))) if callable(observe) else False
        self.annotate(global_step, eval_metrics=numbers)
        return extended

    def annotate(
        self, global_step: int, *, train_loss: float | None = None, eval_metrics: Mapping[str, float] | None = None
    ) -> None:
        """Attach a training loss or eval metrics to the snapshot taken at `global_step` (if any)."""
        taken = self._snapshot_at_step.get(int(global_step))
        if taken is None or self.writer is None:
            return
        name, averaged = taken
        changes: dict[str, Any] = {}
        if _finite(train_loss) is not None:
            changes["train_loss"] = float(train_loss)  # type: ignore[arg-type]
        if eval_metrics and not averaged:
            changes["eval_metrics"] = dict(eval_metrics)
        if changes:
            self.writer.update_record(name, **changes)
            error = self.writer.wait() if self._finished else None  # after finish() the update ran inline
            if error is not None:
                raise SnapshotWriteError(f"updating snapshot {name} in the manifest failed: {error}") from error

    # ------------------------------------------------------------------ checkpoints and the end
    def state_dict(self) -> dict[str, Any]:
        """The state a training checkpoint must carry (plain values and CPU tensors)."""
        if self._anchor is not None:
            self._anchor.wait()
        return {
            "format": _STATE_FORMAT,
            "scheduler_step": self._seen,
            "averager": self.averager.state_dict() if self.averager is not None else None,
            "anchor": self._anchor.tensors if self._anchor is not None else None,
            "restore_pending": self._restore_pending,
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
        if self.restart_from == "first":
            if state.get("anchor") is None and self._past_first_cycle:
                raise ValueError(f"this {STATE_NAME} holds no first-cycle weights for restart_from='first'")
            anchor = state.get("anchor")
            self._anchor = StagedCopy(dict(anchor)) if anchor is not None else None
            self._restore_pending = bool(state.get("restore_pending", False))

    def checkpoint(self, folder: str | Path | None = None) -> None:
        """At a checkpoint: wait for pending writes (raising everywhere on failure) and, on the main
        process, save the state into `folder/STATE_NAME`. A checkpoint then implies its snapshots.
        """
        self._raise(self.writer.wait() if self.writer is not None else None)
        if folder is not None and self.sync.is_main and self.needs_checkpoint_state:
            buffer = io.BytesIO()
            torch.save(self.state_dict(), buffer)
            atomic_write_bytes(Path(folder) / STATE_NAME, buffer.getvalue())

    @property
    def needs_checkpoint_state(self) -> bool:
        """Whether a training checkpoint must carry `STATE_NAME` (a running average or star weights)."""
        return self.averager is not None or self.restart_from == "first"

    def finish(self) -> None:
        """Wait for every write and raise on every rank if one failed; later annotations write at once."""
        self._finished = True
        if self._restore_hook is not None:
            self._restore_hook.remove()
            self._restore_hook = None
        self._buffers = None
        if self.stager is not None:
            self.stager.close()
        self._raise(self.writer.close() if self.writer is not None else None)

    def manifest(self) -> SnapshotManifest | None:
        """The manifest as written so far (main process; `None` elsewhere or without snapshots)."""
        return self.writer.manifest() if self.writer is not None else None

    def _raise(self, error: BaseException | None) -> None:
        self.sync.raise_on_failure(error)

    @staticmethod
    def load_checkpoint_state(folder: str | Path) -> dict[str, Any] | None:
        """The handler state saved in a checkpoint folder by `checkpoint()`, or `None` if there is none."""
        path = Path(folder) / STATE_NAME
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)


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


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _read_manifest(folder: Path) -> SnapshotManifest | None:
    try:
        return SnapshotManifest.load(folder)
    except FileNotFoundError:
        return None
    except (ManifestError, OSError) as error:
        logger.warning("ignoring the unreadable snapshot manifest in %s: %s", folder, error)
        return None
