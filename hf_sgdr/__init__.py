"""hf_sgdr: SGDR (cosine annealing with warm restarts) and snapshot ensembles for the Hugging Face stack.

`import hf_sgdr` registers ``lr_scheduler_type="sgdr"`` with `transformers` (import it before building
an `HfArgumentParser` or loading a `training_args.bin` that uses it).
"""

from ._version import __version__
from .adaptive import AdaptiveSGDR
from .optimizer_reset import check_resettable, reset_optimizer_state
from .plotting import plot_schedule
from .registration import get_sgdr_schedule, register_sgdr_scheduler
from .schedule import DEFAULT_NUM_CYCLES, CycleInfo, CyclePosition, SGDRSchedule, SGDRWarning, build_schedule
from .scheduler import CosineAnnealingWarmRestartsScheduler, SGDRScheduler, SGDRWithWarmup

register_sgdr_scheduler()

__all__ = [
    "DEFAULT_NUM_CYCLES",
    "AdaptiveSGDR",
    "CosineAnnealingWarmRestartsScheduler",
    "CycleInfo",
    "CyclePosition",
    "SGDRSchedule",
    "SGDRScheduler",
    "SGDRWarning",
    "SGDRWithWarmup",
    "__version__",
    "build_schedule",
    "check_resettable",
    "get_sgdr_schedule",
    "plot_schedule",
    "register_sgdr_scheduler",
    "reset_optimizer_state",
]
