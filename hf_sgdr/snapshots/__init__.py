"""Snapshot folders and snapshot ensembles (layers 4 and 6). Names are imported on first use.

The dataloader makers live in `hf_sgdr.data` and are listed here too (model cards import them from here).

The combination function itself is `hf_sgdr.snapshots.combine.combine`: a lazy package attribute
cannot share its name with the submodule `combine`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from ..data import dataset_dataloader, lm_dataloader, text_dataloader
    from .combine import fit_weights
    from .ensemble import EnsemblePrediction, SnapshotEnsemble
    from .evaluation import EvaluationReport, ReportRow
    from .loading import SnapshotLoadError
    from .manifest import (
        HELD_OUT_NAME,
        MANIFEST_NAME,
        TRAIN_DATA_KEY,
        ManifestError,
        SnapshotManifest,
        SnapshotRecord,
        TrainData,
    )
    from .metrics import METHODS, compute_metrics, metric_names_for

_NAMES = {
    "METHODS": ".metrics",
    "compute_metrics": ".metrics",
    "metric_names_for": ".metrics",
    "fit_weights": ".combine",
    "dataset_dataloader": "..data",
    "lm_dataloader": "..data",
    "text_dataloader": "..data",
    "EnsemblePrediction": ".ensemble",
    "SnapshotEnsemble": ".ensemble",
    "EvaluationReport": ".evaluation",
    "ReportRow": ".evaluation",
    "SnapshotLoadError": ".loading",
    "HELD_OUT_NAME": ".manifest",
    "MANIFEST_NAME": ".manifest",
    "TRAIN_DATA_KEY": ".manifest",
    "TrainData": ".manifest",
    "ManifestError": ".manifest",
    "SnapshotManifest": ".manifest",
    "SnapshotRecord": ".manifest",
}

__all__ = [
    "HELD_OUT_NAME",
    "MANIFEST_NAME",
    "METHODS",
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
    "fit_weights",
    "lm_dataloader",
    "metric_names_for",
    "text_dataloader",
]
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
