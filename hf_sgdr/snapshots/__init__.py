"""Snapshot ensembles (layer 6), with the snapshot format's main names (layer 4, `hf_sgdr.snapshot_format`).
Names are imported on first use.

The dataloader makers live in `hf_sgdr.data` and are listed here too (model cards import them from here).

The combination function itself is `hf_sgdr.snapshots.combine.combine`: a lazy package attribute
cannot share its name with the submodule `combine`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from ..data import dataset_dataloader, lm_dataloader, text_dataloader
    from ..snapshot_format.layout import MANIFEST_NAME
    from ..snapshot_format.loading import SnapshotLoadError
    from ..snapshot_format.manifest import (
        HELD_OUT_NAME,
        TRAIN_BLOCKS_KEY,
        TRAIN_DATA_KEY,
        ManifestError,
        SnapshotManifest,
        SnapshotRecord,
        TrainData,
    )
    from .combine import fit_weights
    from .ensemble import SnapshotEnsemble
    from .evaluation import EvaluationReport, ReportRow
    from .metrics import METHODS, PROBABILITY_METRICS, compute_metrics, metric_names_for
    from .prediction import EnsemblePrediction
    from .tracking import log_report, log_report_to_trainer, schedule_figure
    from .trainer_runs import evaluate_trainer_snapshots

_NAMES = {
    "METHODS": ".metrics",
    "PROBABILITY_METRICS": ".metrics",
    "log_report": ".tracking",
    "log_report_to_trainer": ".tracking",
    "schedule_figure": ".tracking",
    "evaluate_trainer_snapshots": ".trainer_runs",
    "compute_metrics": ".metrics",
    "metric_names_for": ".metrics",
    "fit_weights": ".combine",
    "dataset_dataloader": "..data",
    "lm_dataloader": "..data",
    "text_dataloader": "..data",
    "EnsemblePrediction": ".prediction",
    "SnapshotEnsemble": ".ensemble",
    "EvaluationReport": ".evaluation",
    "ReportRow": ".evaluation",
    "SnapshotLoadError": "..snapshot_format.loading",
    "MANIFEST_NAME": "..snapshot_format.layout",
    "HELD_OUT_NAME": "..snapshot_format.manifest",
    "TRAIN_BLOCKS_KEY": "..snapshot_format.manifest",
    "TRAIN_DATA_KEY": "..snapshot_format.manifest",
    "TrainData": "..snapshot_format.manifest",
    "ManifestError": "..snapshot_format.manifest",
    "SnapshotManifest": "..snapshot_format.manifest",
    "SnapshotRecord": "..snapshot_format.manifest",
}

__all__ = [
    "HELD_OUT_NAME",
    "MANIFEST_NAME",
    "METHODS",
    "PROBABILITY_METRICS",
    "TRAIN_BLOCKS_KEY",
    "TRAIN_DATA_KEY",
    "EnsemblePrediction",
    "EvaluationReport",
    "ManifestError",
    "ReportRow",
    "SnapshotEnsemble",
    "SnapshotLoadError",
    "SnapshotManifest",
    "SnapshotRecord",
    "TrainData",
    "compute_metrics",
    "dataset_dataloader",
    "evaluate_trainer_snapshots",
    "fit_weights",
    "lm_dataloader",
    "log_report",
    "log_report_to_trainer",
    "metric_names_for",
    "schedule_figure",
    "text_dataloader",
]
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
