"""Training-loop glue (layer 5): snapshots at cycle ends, optimizer resets, weight averaging.

One core (`hf_sgdr.training.cycle_end.CycleEndHandler`) serves both loops: `SGDRCallback` / `SGDRTrainer`
for the `transformers.Trainer`, `SGDRAccelerateHelper` for plain Accelerate loops. `SGDROptions` holds
the options once for every front end (`SGDRTrainingArguments` puts them on the command line). A plain
Accelerate loop's checkpoints (`save_checkpoint`, `find_checkpoint`, `latest_checkpoint`, `ResumePoint`,
`epoch_batches`: atomic saves, exact mid-epoch resume) are in `loop_checkpoints`. Names
are imported on first use; internals (the handler, the process sync, the state file name) stay in
their modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .accelerate_loop import SGDRAccelerateHelper
    from .arguments import SGDROptions, SGDRTrainingArguments
    from .averaging import CycleAverager
    from .callback import SGDRCallback
    from .cycle_end import CycleEndEvent
    from .distributed import SnapshotWriteError
    from .loop_checkpoints import ResumePoint, epoch_batches, find_checkpoint, latest_checkpoint, save_checkpoint
    from .snapshot_recorder import ResumeMismatchError
    from .trainer import SGDRTrainer
    from .weights import capture_weights, save_weights
    from .writer import SnapshotWriter

_NAMES = {
    "SGDRAccelerateHelper": ".accelerate_loop",
    "SGDROptions": ".arguments",
    "SGDRTrainingArguments": ".arguments",
    "CycleAverager": ".averaging",
    "SGDRCallback": ".callback",
    "ResumePoint": ".loop_checkpoints",
    "epoch_batches": ".loop_checkpoints",
    "find_checkpoint": ".loop_checkpoints",
    "latest_checkpoint": ".loop_checkpoints",
    "save_checkpoint": ".loop_checkpoints",
    "CycleEndEvent": ".cycle_end",
    "SnapshotWriteError": ".distributed",
    "ResumeMismatchError": ".snapshot_recorder",
    "SGDRTrainer": ".trainer",
    "capture_weights": ".weights",
    "save_weights": ".weights",
    "SnapshotWriter": ".writer",
}

__all__ = [
    "CycleAverager",
    "CycleEndEvent",
    "ResumeMismatchError",
    "ResumePoint",
    "SGDRAccelerateHelper",
    "SGDRCallback",
    "SGDROptions",
    "SGDRTrainer",
    "SGDRTrainingArguments",
    "SnapshotWriteError",
    "SnapshotWriter",
    "capture_weights",
    "epoch_batches",
    "find_checkpoint",
    "latest_checkpoint",
    "save_checkpoint",
    "save_weights",
]
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
