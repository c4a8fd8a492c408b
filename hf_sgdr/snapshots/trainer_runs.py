"""The snapshots of an `SGDRTrainer` run (or a `Trainer` with an `SGDRCallback`) evaluated on data as the
Trainer sees it (`SnapshotEnsemble.from_trainer` loads them).

This lives on the ensemble side so that the training glue (layer 5) never imports the ensembles (layer 6): a
trainer only hands over its options, arguments, collator and callbacks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader
from transformers.utils import is_datasets_available

from .ensemble import SnapshotEnsemble
from .tracking import log_report_to_trainer

if TYPE_CHECKING:
    from transformers import Trainer

    from .evaluation import EvaluationReport
    from .metric_suite import MetricSpec


def evaluate_trainer_snapshots(
    trainer: Trainer,
    eval_dataset: Any = None,
    selection_dataset: Any = None,
    *,
    metrics: MetricSpec | Sequence[MetricSpec] | None = None,
    method: str = "average",
    soups: bool = True,
    selection_metric: str | None = None,
    temperature_scaling: bool = False,
    json_path: str | os.PathLike[str] | None = None,
    print_table: bool = False,
) -> EvaluationReport | None:
    """Evaluate the snapshots of `trainer`'s run (an `SGDRTrainer`, or a `Trainer` with an `SGDRCallback`): each
    alone, the ensembles of the last k, the soups, and (with `selection_dataset`, a split other than the reported
    one) the best snapshot, the greedy soup and selection, chosen by `selection_metric`, and with
    `temperature_scaling` the temperature-scaled rows (see `SnapshotEnsemble.evaluate`).

    `metrics`: built-in names (default: the task's, offline), an `evaluate` module, or a `compute_metrics`
    function as the Trainer's (or a list mixing them). Reports on `eval_dataset` (default: the Trainer's),
    collated like `Trainer.evaluate`. With `report_to="tensorboard"` the table and the schedule plot are added to
    the run's TensorBoard (`tracking`). Runs on the main process (one model resident at a time); the other
    processes wait and get `None`.
    """
    from ..training.callback import SGDRCallback

    if not SGDRCallback.installed_in(trainer).options.save_snapshots:  # refused on every process, before loading
        raise ValueError("evaluate_trainer_snapshots needs snapshots; this run has save_snapshots=False")
    dataset = eval_dataset if eval_dataset is not None else trainer.eval_dataset
    if dataset is None:
        raise ValueError("evaluate_trainer_snapshots needs an eval_dataset (none given and the Trainer has none)")
    report = None
    if trainer.is_world_process_zero():
        ensemble = SnapshotEnsemble.from_trainer(trainer)
        report = ensemble.evaluate(
            _dataloader(trainer, dataset, "evaluation"),
            None if selection_dataset is None else _dataloader(trainer, selection_dataset, "selection"),
            metrics=metrics,
            method=method,
            soups=soups,
            selection_metric=selection_metric,
            temperature_scaling=temperature_scaling,
            json_path=json_path,
            print_table=print_table,
        )
        log_report_to_trainer(trainer, ensemble.source, report)
    trainer.accelerator.wait_for_everyone()
    return report


def _dataloader(trainer: Trainer, dataset: Any, description: str) -> DataLoader:
    """`dataset` as `Trainer.evaluate` sees it (model columns only, the Trainer's collator), unsharded."""
    if is_datasets_available():
        import datasets

        if isinstance(dataset, datasets.Dataset):
            dataset = trainer._remove_unused_columns(dataset, description=description)
    return DataLoader(dataset, batch_size=trainer.args.per_device_eval_batch_size, collate_fn=trainer.data_collator)
