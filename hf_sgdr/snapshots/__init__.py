"""Snapshot folders and snapshot ensembles (layer 5)."""

from .combine import METHODS, combine, fit_weights
from .data import dataset_dataloader, lm_dataloader, text_dataloader
from .ensemble import EnsemblePrediction, SnapshotEnsemble
from .evaluation import EvaluationReport, ReportRow
from .loading import SnapshotLoadError
from .manifest import MANIFEST_NAME, ManifestError, SnapshotManifest, SnapshotRecord

__all__ = [
    "MANIFEST_NAME",
    "METHODS",
    "EnsemblePrediction",
    "EvaluationReport",
    "ManifestError",
    "ReportRow",
    "SnapshotEnsemble",
    "SnapshotLoadError",
    "SnapshotManifest",
    "SnapshotRecord",
    "combine",
    "dataset_dataloader",
    "fit_weights",
    "lm_dataloader",
    "text_dataloader",
]
