"""Training-loop glue (layer 4): snapshots at cycle ends, optimizer resets, weight averaging.

One core (`CycleEndHandler`) serves both loops: `SGDRCallback` / `SGDRTrainer` for the
`transformers.Trainer`, `SGDRAccelerateHelper` for plain Accelerate loops. `SGDROptions` holds the
options once for every front end (`SGDRTrainingArguments` puts them on the command line).
"""

from .accelerate_loop import SGDRAccelerateHelper
from .arguments import SGDROptions, SGDRTrainingArguments, merge_scheduler_kwargs
from .averaging import CycleAverager
from .callback import SGDRCallback
from .core import STATE_NAME, CycleEndEvent, CycleEndHandler, check_event_api, library_versions
from .distributed import ProcessSync, SnapshotWriteError
from .model_info import ModelDescription, describe_model
from .trainer import SGDRTrainer
from .weights import capture_weights, save_weights
from .writer import SnapshotWriter, snapshot_name

__all__ = [
    "STATE_NAME",
    "CycleAverager",
    "CycleEndEvent",
    "CycleEndHandler",
    "ModelDescription",
    "ProcessSync",
    "SGDRAccelerateHelper",
    "SGDRCallback",
    "SGDROptions",
    "SGDRTrainer",
    "SGDRTrainingArguments",
    "SnapshotWriteError",
    "SnapshotWriter",
    "capture_weights",
    "check_event_api",
    "describe_model",
    "library_versions",
    "merge_scheduler_kwargs",
    "save_weights",
    "snapshot_name",
]
