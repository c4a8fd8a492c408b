"""Snapshot folders and snapshot ensembles (layer 5)."""

from .manifest import MANIFEST_NAME, ManifestError, SnapshotManifest, SnapshotRecord

__all__ = ["MANIFEST_NAME", "ManifestError", "SnapshotManifest", "SnapshotRecord"]
