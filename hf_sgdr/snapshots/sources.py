"""What `SnapshotEnsemble`'s loaders read from a folder besides the members' weights: the manifest checked as one
the ensemble can combine, the selected snapshot names, and the saved tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..snapshot_format.layout import MANIFEST_NAME
from ..snapshot_format.loading import SnapshotLoadError, auto_model_class, root_entries
from ..snapshot_format.manifest import SnapshotManifest
from .selection import select_members
from .tasks.registry import supported_auto_classes

_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model")


def combinable(manifest: SnapshotManifest, root: Path) -> SnapshotManifest:
    """`manifest`, unless it lists no snapshot or models whose outputs the ensemble cannot combine."""
    if not manifest.snapshots:
        raise SnapshotLoadError(
            f"{root / MANIFEST_NAME} lists no snapshots: the run has not finished a cycle yet (a snapshot is "
            "listed once its cycle ended and its files are complete)"
        )
    if manifest.auto_class not in supported_auto_classes():
        auto_model_class(manifest.auto_class)  # a name that is no AutoModel class at all: refused as such
        raise ValueError(
            f"the snapshots in {root} are {manifest.auto_class} models (manifest.json auto_class), whose outputs the "
            f"ensemble cannot combine: it supports {', '.join(supported_auto_classes())}. Load a snapshot on its own "
            f"with transformers.{manifest.auto_class}.from_pretrained(folder, subfolder=name)"
        )
    return manifest


def select_snapshots(manifest: SnapshotManifest, snapshots: Sequence[str] | int | None) -> list[str]:
    """The names `snapshots` selects among the manifest's (all when None)."""
    names = [record.name for record in manifest.snapshots]
    return select_members("snapshots", snapshots, names, names, "the manifest")


def load_tokenizer(root: Path, containment: Path) -> Any:
    """The tokenizer saved in `root`, or None; every entry of `root` must resolve inside `containment`."""
    root_entries(root, containment)
    if not any((root / name).is_file() for name in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(root, local_files_only=True, trust_remote_code=False)
