"""One snapshot per cycle end: the weights copied off the training thread and handed to the background writer.

`SnapshotRecorder` opens the snapshot folder's manifest (continued by a resumed run, replaced by a new one),
copies each cycle's weights (or their running average) into reused host buffers (on a GPU launched on a side
stream, `staging`), hands them with their `SnapshotRecord` to `writer.SnapshotWriter`, and attaches the
training loss and eval metrics that arrive later to the record. Every process calls it at the same points;
only the main process writes, and a failed write raises on every process (`distributed.ProcessSync`).
A snapshot that the manifest already lists for the same cycle and scheduler step is not written again. A resumed
run must train on the data the listed snapshots trained on: a different record of the held-out training data
(`TRAIN_DATA_KEY`, `TRAIN_BLOCKS_KEY`; another seed or held-out share) is refused before it trains on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..local_paths import is_local_path, last_part
from ..snapshot_format.manifest import (
    TRAIN_BLOCKS_KEY,
    TRAIN_DATA_KEY,
    ManifestError,
    ModelDescription,
    SnapshotManifest,
    SnapshotRecord,
    new_manifest,
)
from .distributed import ProcessSync, SnapshotWriteError
from .staging import CudaStager
from .weights import host_buffers, join_weight_gather, save_weights, stage_weights
from .writer import SnapshotWriter

logger = logging.getLogger(__name__)

#: A wait for the previous snapshot's write longer than this is logged as a warning (else at INFO).
SLOW_WRITE_WAIT_S = 1.0


class SnapshotRecorder:
    """Writes the snapshots of one run into `snapshot_dir` and keeps their manifest records up to date.

    Args:
        snapshot_dir: The snapshot folder.
        model: The model being trained (wrappers allowed).
        description: The model's header for the manifest (`describe_model`).
        schedule: The schedule for the manifest (`SGDRSchedule.to_dict()`), if the scheduler has one.
        training: The manifest's `training` facts.
        resumed: The run continues an earlier one (its listed snapshots stay; else they are replaced).
        sync: The processes' failure exchange.
        stager: Launches the copies on a CUDA side stream (`None`: the blocking copy).
        accelerator: The `Accelerator`, so that sharded weights are gathered (FSDP, ZeRO-3).
        sharded: The weights are sharded (every process joins the gather).
        max_snapshots: Keep only the newest K snapshots; `None` keeps all.
        processing_class: Tokenizer / processor to save once beside the snapshots.
    """

    def __init__(
        self,
        snapshot_dir: Path,
        model: torch.nn.Module,
        *,
        description: ModelDescription,
        schedule: dict[str, Any] | None,
        training: dict[str, Any],
        resumed: bool,
        sync: ProcessSync,
        stager: CudaStager | None,
        accelerator: Any,
        sharded: bool,
        max_snapshots: int | None,
        processing_class: Any,
    ) -> None:
        self.snapshot_dir = snapshot_dir
        self.model = model
        self.sync = sync
        self.stager = stager
        self.accelerator = accelerator
        self.sharded = sharded
        self._snapshot_at_step: dict[int, tuple[str, bool]] = {}
        self._written: dict[str, int] = {}
        self._buffers: dict[str, torch.Tensor] | None = None  # the last snapshot's host copy, reused
        self._finished = False
        self.writer: SnapshotWriter | None = None
        if resumed:  # every process knows it resumed: the main process' verdict reaches all of them
            previous = check_resumed_training_data(snapshot_dir, training, sync)
        else:
            previous = _read_manifest(snapshot_dir) if sync.is_main else None
        if sync.is_main:
            self.writer = self._open_writer(
                description, schedule, training, previous, resumed=resumed, max_snapshots=max_snapshots
            )
            if processing_class is not None:
                self.writer.save_processor(processing_class)
            self._buffers = host_buffers(model, stager, accelerator)

    def _open_writer(
        self,
        description: ModelDescription,
        schedule: dict[str, Any] | None,
        training: dict[str, Any],
        previous: SnapshotManifest | None,
        *,
        resumed: bool,
        max_snapshots: int | None,
    ) -> SnapshotWriter:
        """The writer over this run's manifest (`previous`: the folder's, if any): a resumed run keeps the listed
        snapshots, a new one replaces them."""
        records = list(previous.snapshots) if previous is not None and resumed else []
        obsolete = [r.name for r in previous.snapshots] if previous is not None and not resumed else []
        if obsolete:
            logger.warning(
                "starting a new run in %s: the snapshots of the previous run there (%s) are replaced",
                self.snapshot_dir,
                ", ".join(obsolete),
            )
        self._written = {r.name: r.scheduler_step for r in records}
        manifest = new_manifest(description, schedule=schedule, training=training, snapshots=records)
        return SnapshotWriter(self.snapshot_dir, manifest, max_snapshots=max_snapshots, obsolete=obsolete)

    def record(self, record: SnapshotRecord, averages: dict[str, torch.Tensor] | None) -> float:
        """Wait for the previous write (raising its error everywhere), then copy and hand over this snapshot
        (`averages` instead of the weights they average). Returns the seconds the training thread spent here."""
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
        if self.writer is None:
            if self.sharded:
                join_weight_gather(self.model, self.accelerator)
            return time.perf_counter() - start
        # The previous write has finished (waited for above): its host copy is free to be overwritten.
        staged = stage_weights(self.model, self.stager, self.accelerator, replace=averages, reuse=self._buffers)
        model = self.model

        def save(folder: Path) -> None:
            staged.wait()  # the copy may still be in flight on the GPU
            save_weights(model, folder, staged.tensors)

        self.writer.submit_snapshot(record, save)
        self._written[record.name] = record.scheduler_step
        self._buffers = staged.tensors
        return time.perf_counter() - start

    def annotate(
        self, global_step: int, *, train_loss: float | None = None, eval_metrics: Mapping[str, float] | None = None
    ) -> None:
        """Attach a training loss or eval metrics to the snapshot taken at `global_step` (if any); eval metrics
        not to an averaged snapshot (the evaluation measured the raw weights)."""
        taken = self._snapshot_at_step.get(int(global_step))
        if taken is None or self.writer is None:
            return
        name, averaged = taken
        changes: dict[str, Any] = {}
        if train_loss is not None:
            changes["train_loss"] = float(train_loss)
        if eval_metrics and not averaged:
            changes["eval_metrics"] = dict(eval_metrics)
        if changes:
            self.writer.update_record(name, **changes)
            error = self.writer.wait() if self._finished else None  # after finish() the update ran inline
            if error is not None:
                raise SnapshotWriteError(f"updating snapshot {name} in the manifest failed: {error}") from error

    def wait(self) -> None:
        """Wait for the pending writes; raise on every process if one failed."""
        self.sync.raise_on_failure(self.writer.wait() if self.writer is not None else None)

    def finish(self) -> None:
        """Wait for every write and raise on every process if one failed; later annotations write at once."""
        self._finished = True
        self._buffers = None
        self.sync.raise_on_failure(self.writer.close() if self.writer is not None else None)

    def manifest(self) -> SnapshotManifest | None:
        """The manifest as written so far (main process; `None` elsewhere)."""
        return self.writer.manifest() if self.writer is not None else None


class ResumeMismatchError(ValueError):
    """A resumed run would train on other data than the snapshots it continues were trained on."""


def check_resumed_training_data(
    snapshot_dir: Path, training: Mapping[str, Any], sync: ProcessSync, *, warn: bool = True
) -> SnapshotManifest | None:
    """Collective: raise `ResumeMismatchError` on every process when a resumed run's record of its held-out training
    data (`training`, the manifest facts it would write) differs from the one the listed snapshots in `snapshot_dir`
    were trained with (the main process reads and decides). `warn`: also warn about snapshots that record none (an
    early check, followed by the recorder's, leaves that to it). Returns the folder's manifest on the main process."""
    previous = _read_manifest(snapshot_dir) if sync.is_main else None
    try:
        change = _changed_training_data(previous, training, snapshot_dir, warn) if previous is not None else None
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # a record of another shape: refused too
        change = f"its manifest's record of the training data cannot be compared ({type(error).__name__}: {error})"
    change = sync.broadcast(change)  # reached by every process, whatever the main one found
    if change is not None:
        raise ResumeMismatchError(
            f"resuming in {snapshot_dir}: {change}. Resume with the flags the run started with (seed, held-out "
            "share, data), or start a new run in another output_dir"
        )
    return previous


def _changed_training_data(
    previous: SnapshotManifest, training: Mapping[str, Any], snapshot_dir: Path, warn: bool
) -> str | None:
    """How this run's record of its held-out training data differs from the one its listed snapshots (in
    `snapshot_dir`) were trained with (`None`: the same, or no snapshots yet). Local paths with the same last part
    are the same data, moved. A record the earlier run did not make is only warned about (`warn`): an older version
    wrote none."""
    if not previous.snapshots:
        return None
    changes = []
    for key in (TRAIN_DATA_KEY, TRAIN_BLOCKS_KEY):
        before, now = previous.training.get(key), training.get(key)
        if before is None or before == now:
            if before is None and now is not None and warn:
                logger.warning(
                    "the snapshots in %s record no training.%s; this resumed run records its own, which holds for "
                    "them only if the run held out the same data from the start",
                    snapshot_dir,
                    key,
                )
            continue
        if now is None:
            changes.append(f"its snapshots record the training data they held out (training.{key}), this run none")
            continue
        unit = "blocks" if key == TRAIN_BLOCKS_KEY else "rows"
        described = []
        for name in sorted(set(before) | set(now)):
            if before.get(name) == now.get(name) or _same_local_name(before.get(name), now.get(name)):
                continue
            if name == "held_out" and isinstance(before.get(name), list) and isinstance(now.get(name), list):
                common = len(set(before[name]) & set(now[name]))
                described.append(
                    f"{len(now[name])} held-out {unit}, of which {common} are among the {len(before[name])} recorded"
                )
            else:
                described.append(f"{name} {now.get(name)!r} where {before.get(name)!r} was recorded")
        if not described:  # only the folders differ: the same data, moved
            continue
        seeds = previous.training.get("seed"), training.get("seed")
        if None not in seeds and seeds[0] != seeds[1]:  # the likely cause, named first
            described.insert(0, f"seed {seeds[1]} where {seeds[0]} was recorded")
        changes.append(f"this run holds out other training {unit} than its snapshots ({'; '.join(described)})")
    return "; ".join(changes) or None


def _same_local_name(before: Any, now: Any) -> bool:
    """Two local paths with the same last part: the run's data moved (another machine, home or mount) with it."""
    return (
        isinstance(before, str)
        and isinstance(now, str)
        and is_local_path(before)
        and is_local_path(now)
        and last_part(before) == last_part(now)
    )


def _read_manifest(folder: Path) -> SnapshotManifest | None:
    try:
        return SnapshotManifest.load(folder)
    except FileNotFoundError:
        return None
    except (ManifestError, OSError) as error:
        logger.warning("ignoring the unreadable snapshot manifest in %s: %s", folder, error)
        return None
