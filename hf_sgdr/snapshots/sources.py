"""Where a loaded `SnapshotEnsemble`'s members come from: a snapshot folder or Hub repo (`snapshot_folders`), or a
`Trainer` run's `checkpoint-*` folders (`checkpoint_folders`), verified and described for the ensemble's one
`_from_folders` path; and what its loaders read besides the members' weights: the manifest checked as one the
ensemble can combine, the selected snapshot names, and the saved tokenizer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..missing_resources import explain_missing
from ..snapshot_format.layout import MANIFEST_NAME
from ..snapshot_format.loading import (
    SnapshotLoadError,
    auto_model_class,
    check_local_source,
    open_manifest,
    root_entries,
    verify_folder,
)
from ..snapshot_format.manifest import SnapshotManifest, SnapshotRecord
from ..snapshot_format.members import auto_class_for, read_config
from .checkpoints import checkpoint_record, find_checkpoints, select_checkpoints
from .hub import is_repo_id, resolve_source
from .runners import StateDict
from .selection import select_members
from .tasks.registry import supported_auto_classes

_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model")


def combinable(manifest: SnapshotManifest, root: Path) -> SnapshotManifest:
    """`manifest`, unless it lists no snapshot or models whose outputs the ensemble cannot combine."""
    if not manifest.snapshots:
        raise SnapshotLoadError(
            f"{root / MANIFEST_NAME} lists no snapshots: no cycle of the run has ended, yet or at all (a snapshot "
            "is listed once its cycle ended and its files are complete; a first cycle longer than the training "
            "budget ends none: set num_cycles, or a shorter T_0)"
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


@dataclass
class EnsembleMember:
    """One member of a `SnapshotEnsemble`: its record, and where its weights are."""

    record: SnapshotRecord
    folder: Path | None = None  # a verified snapshot folder on disk
    state: StateDict | None = None  # a CPU copy of a full model's weights (add_model)


@dataclass
class MemberFolders:
    """Verified member folders with what the manifest's header (or the checkpoints' config) says of them."""

    members: list[EnsembleMember]
    snapshot_type: str
    auto_class: str | None
    base_model: str | None
    tokenizer: Any = None  # the tokenizer saved beside the members, or None
    source: Path | None = None  # the snapshot folder loaded from (None: checkpoints, pushed via a saved copy)
    library_versions: dict[str, str] | None = None


def snapshot_folders(
    path_or_repo_id: str | os.PathLike[str],
    revision: str | None = None,
    snapshots: Sequence[str] | int | None = None,
    base_model: str | None = None,
    *,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    force_download: bool = False,
) -> tuple[MemberFolders, SnapshotManifest]:
    """The selected snapshots of a snapshot folder (or a training output folder holding `snapshots/`) or Hub repo,
    verified (in parallel threads), with the folder's manifest (`SnapshotEnsemble.from_pretrained`)."""
    check_local_source(path_or_repo_id)
    name = os.fspath(path_or_repo_id)
    on_hub = not Path(name).exists() and is_repo_id(name)
    with explain_missing(f"the snapshot ensemble {name!r} from the Hub") if on_hub else contextlib.nullcontext():
        root, containment = resolve_source(
            path_or_repo_id,
            revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
            force_download=force_download,
        )
    names = select_snapshots(combinable(open_manifest(root, containment), root), snapshots)
    manifest, records = verify_folder(root, names, containment)
    folders = MemberFolders(
        [EnsembleMember(record, folder=root / record.name) for record in records],
        manifest.snapshot_type,
        manifest.auto_class,
        base_model or manifest.base_model,
        tokenizer=load_tokenizer(root, containment),
        source=root,
        library_versions=dict(manifest.library_versions),
    )
    return folders, manifest


def checkpoint_folders(
    output_dir: str | os.PathLike[str],
    checkpoints: Sequence[str] | int | None = None,
    auto_class: str | None = None,
) -> MemberFolders:
    """The selected `checkpoint-*` folders of a `Trainer` run's `output_dir`, in step order, as full-model members
    (`SnapshotEnsemble.from_checkpoints`; the safety rules: `checkpoints`)."""
    root = Path(output_dir)
    check_local_source(root)
    folders = select_checkpoints(find_checkpoints(root), checkpoints)
    records = [checkpoint_record(folder, index, root) for index, folder in enumerate(folders)]
    if auto_class is not None and auto_class not in supported_auto_classes():
        raise ValueError(f"auto_class must be one of {', '.join(supported_auto_classes())}; got {auto_class!r}")
    tokenizer = load_tokenizer(folders[-1], root) or load_tokenizer(root, root)
    auto_class = auto_class or auto_class_for(
        read_config(folders[0], folders[0].name), supported_auto_classes(), folders[0].name
    )
    members = [EnsembleMember(record, folder=folder) for record, folder in zip(records, folders, strict=True)]
    return MemberFolders(members, "full_model", auto_class, None, tokenizer=tokenizer)
