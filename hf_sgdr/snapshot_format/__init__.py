"""The snapshot format (layer 4): what a snapshot folder holds on disk, defined once.

The training side writes it (`hf_sgdr.training`) and the ensembles read it (`hf_sgdr.snapshots`); neither
defines any of it. `layout` names the files and folders, `manifest` is `manifest.json` and its header
(`new_manifest`, `library_versions`), `model_description` tells the header from a model (full weights or
a PEFT adapter, Auto class, base model), `tensors` makes the CPU copy a snapshot holds, `storage` writes one
snapshot folder with its checksums, and `loading` verifies a folder before anything in it is loaded.
Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .layout import MANIFEST_NAME, snapshot_name
    from .loading import SnapshotLoadError, verify_folder
    from .manifest import (
        HELD_OUT_NAME,
        TRAIN_BLOCKS_KEY,
        TRAIN_DATA_KEY,
        ManifestError,
        ModelDescription,
        SnapshotManifest,
        SnapshotRecord,
        TrainData,
        library_versions,
        new_manifest,
    )
    from .model_description import describe_model

_NAMES = {
    "MANIFEST_NAME": ".layout",
    "snapshot_name": ".layout",
    "SnapshotLoadError": ".loading",
    "verify_folder": ".loading",
    "HELD_OUT_NAME": ".manifest",
    "TRAIN_BLOCKS_KEY": ".manifest",
    "TRAIN_DATA_KEY": ".manifest",
    "ManifestError": ".manifest",
    "ModelDescription": ".manifest",
    "SnapshotManifest": ".manifest",
    "SnapshotRecord": ".manifest",
    "TrainData": ".manifest",
    "library_versions": ".manifest",
    "new_manifest": ".manifest",
    "describe_model": ".model_description",
}

__all__ = [
    "HELD_OUT_NAME",
    "MANIFEST_NAME",
    "TRAIN_BLOCKS_KEY",
    "TRAIN_DATA_KEY",
    "ManifestError",
    "ModelDescription",
    "SnapshotLoadError",
    "SnapshotManifest",
    "SnapshotRecord",
    "TrainData",
    "describe_model",
    "library_versions",
    "new_manifest",
    "snapshot_name",
    "verify_folder",
]
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
