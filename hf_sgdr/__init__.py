"""hf_sgdr: SGDR (cosine annealing with warm restarts) and snapshot ensembles for the Hugging Face stack.

`import hf_sgdr` registers ``lr_scheduler_type="sgdr"`` with `transformers` (import it before building
an `HfArgumentParser` or loading a `training_args.bin` that uses it). The import itself is light: the
registration happens when `transformers` loads its scheduler modules, and every name below is imported
on first use (PEP 562), so `import hf_sgdr` loads neither torch, peft nor the Trainer.

The public names: the schedule (`SGDRSchedule`, `build_schedule`, ...), the torch scheduler
(`SGDRScheduler`, `AdaptiveSGDR`), the training glue (`SGDRTrainer`, `SGDRCallback`,
`SGDRTrainingArguments`, `SGDRAccelerateHelper`; more in `hf_sgdr.training`), `SnapshotEnsemble` (more
in `hf_sgdr.snapshots`) and `loading` / `ResourceNotFoundError` (a model or dataset that cannot be found
ends as one line saying what is missing); the dataset helpers are in `hf_sgdr.data`.
`CosineAnnealingWarmRestartsScheduler` (a torch-like name) and `SGDRWithWarmup` (warmup first among the
positional arguments) are other spellings of `SGDRScheduler`, the class to use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _ensemble_side
from ._lazy import lazy_attributes
from ._version import __version__
from .registration import register_sgdr_scheduler_on_import

if TYPE_CHECKING:
    from .adaptive import AdaptiveSGDR
    from .missing_resources import ResourceNotFoundError, loading
    from .optimizer_reset import check_resettable, reset_optimizer_state
    from .plotting import plot_schedule
    from .registration import get_sgdr_schedule, register_sgdr_scheduler
    from .schedule import DEFAULT_NUM_CYCLES, CycleInfo, CyclePosition, SGDRSchedule, SGDRWarning, build_schedule
    from .scheduler import CosineAnnealingWarmRestartsScheduler, SGDRScheduler, SGDRWithWarmup
    from .snapshots.ensemble import SnapshotEnsemble
    from .training.accelerate_loop import SGDRAccelerateHelper
    from .training.arguments import SGDRTrainingArguments
    from .training.callback import SGDRCallback
    from .training.trainer import SGDRTrainer

_NAMES = {
    "AdaptiveSGDR": ".adaptive",
    "ResourceNotFoundError": ".missing_resources",
    "loading": ".missing_resources",
    "check_resettable": ".optimizer_reset",
    "reset_optimizer_state": ".optimizer_reset",
    "plot_schedule": ".plotting",
    "get_sgdr_schedule": ".registration",
    "register_sgdr_scheduler": ".registration",
    "DEFAULT_NUM_CYCLES": ".schedule",
    "CycleInfo": ".schedule",
    "CyclePosition": ".schedule",
    "SGDRSchedule": ".schedule",
    "SGDRWarning": ".schedule",
    "build_schedule": ".schedule",
    "SGDRScheduler": ".scheduler",
    "CosineAnnealingWarmRestartsScheduler": ".scheduler",  # SGDRScheduler under a torch-like name
    "SGDRWithWarmup": ".scheduler",  # SGDRScheduler, warmup first among the positional arguments
    "SnapshotEnsemble": ".snapshots.ensemble",
    "SGDRAccelerateHelper": ".training.accelerate_loop",
    "SGDRTrainingArguments": ".training.arguments",
    "SGDRCallback": ".training.callback",
    "SGDRTrainer": ".training.trainer",
}

__all__ = [
    "DEFAULT_NUM_CYCLES",
    "AdaptiveSGDR",
    "CosineAnnealingWarmRestartsScheduler",
    "CycleInfo",
    "CyclePosition",
    "ResourceNotFoundError",
    "SGDRAccelerateHelper",
    "SGDRCallback",
    "SGDRSchedule",
    "SGDRScheduler",
    "SGDRTrainer",
    "SGDRTrainingArguments",
    "SGDRWarning",
    "SGDRWithWarmup",
    "SnapshotEnsemble",
    "__version__",
    "build_schedule",
    "check_resettable",
    "get_sgdr_schedule",
    "loading",
    "plot_schedule",
    "register_sgdr_scheduler",
    "reset_optimizer_state",
]
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES, eager=["__version__", "register_sgdr_scheduler_on_import"])


def _evaluate_trainer_snapshots(trainer: SGDRTrainer, *args: object, **kwargs: object) -> object:
    """`hf_sgdr.snapshots.evaluate_trainer_snapshots`, imported when called: the package front wires it in for
    the training glue, which cannot import the ensembles."""
    from .snapshots.trainer_runs import evaluate_trainer_snapshots

    return evaluate_trainer_snapshots(trainer, *args, **kwargs)


_ensemble_side.evaluate_trainer_snapshots = _evaluate_trainer_snapshots

register_sgdr_scheduler_on_import()
