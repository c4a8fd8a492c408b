"""Where an ensemble goes: a snapshot folder on disk (`save_pretrained`) or a Hub repo (`push_to_hub`).

`save_ensemble` writes the folder whole under a temporary name beside the destination, which it then replaces
in one step (`folder_swap.replacing_folder`; what may be replaced and what is kept: `destination`): one
subfolder per member, written by the ensemble's writer for it and checksummed (`storage.write_snapshot_folder`),
the tokenizer, the schedule plot, the model card, and the manifest last. `push_ensemble` pushes the folder the
ensemble was loaded from in place, with a fresh card, or else a saved temporary copy; both go through
`hub.push_folder`, the one push path. `SnapshotEnsemble` says which members it holds and how each is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from ..atomic import atomic_write_text, check_output_file
from ..folder_swap import replacing_folder
from ..snapshot_format.layout import CARD_NAME, MANIFEST_NAME, PLOT_NAME
from ..snapshot_format.loading import contained
from ..snapshot_format.manifest import SnapshotManifest, SnapshotRecord
from ..snapshot_format.storage import write_snapshot_folder
from .card import build_card, card_files, write_schedule_plot
from .destination import carry_over, save_target
from .evaluation import EvaluationReport
from .hub import push_folder
from .runners import StateDict, copy_state

#: Writes one member's files into the (temporary) snapshot folder it is given.
MemberWriter = Callable[[Path], None]


def copy_member_files(source: Path, record: SnapshotRecord, folder: Path) -> None:
    """The files `record` lists, copied from the verified member folder `source` into `folder` (never outside it)."""
    for name in record.files:
        target = contained(folder / name, folder, f"{record.name}/{name}")  # never write outside
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)


def save_full_model(template: nn.Module, state: StateDict, folder: Path) -> None:
    """A full model's CPU copy `state`, loaded into `template` and written with its `save_pretrained`."""
    if not hasattr(template, "save_pretrained"):
        raise TypeError(
            "save_pretrained needs transformers models (PreTrainedModel or a PEFT model); "
            f"got {type(template).__name__}"
        )
    copy_state(template, state)
    template.save_pretrained(folder)


def save_ensemble(
    save_directory: str | os.PathLike[str],
    members: Sequence[tuple[SnapshotRecord, MemberWriter]],
    manifest: Callable[[list[SnapshotRecord]], SnapshotManifest],
    *,
    tokenizer: Any = None,
    report: EvaluationReport | None = None,
    dataset: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write the snapshot folder at `save_directory` in one swap and return it (see the module's docstring).

    `members`: each member's record and its writer, oldest first; `manifest` makes the ensemble's manifest of the
    records written (with their files). `report` fills the card's results table."""
    existing = Path(save_directory)
    if existing.is_dir():  # a FIFO or a device where the ensemble's own files go: refused before any work
        for name in (MANIFEST_NAME, PLOT_NAME, CARD_NAME):
            check_output_file(existing / name)
    target = save_target(save_directory)
    with replacing_folder(target) as root:
        records = []
        for record, write in members:
            files = write_snapshot_folder(root / record.name, write)
            records.append(replace(record, files=files))
        if tokenizer is not None:
            tokenizer.save_pretrained(root)
        written = manifest(records)
        has_plot = write_schedule_plot(written, root / PLOT_NAME)
        card = build_card(written, report=report, repo_id=repo_id, dataset=dataset, has_plot=has_plot)
        atomic_write_text(root / CARD_NAME, str(card))
        written.save(root)
        carry_over(target, root)
    return target


def push_ensemble(
    repo_id: str,
    *,
    source: Path | None,
    manifest: Callable[[], SnapshotManifest],
    save: Callable[[str], object],
    report: EvaluationReport | None = None,
    dataset: str | None = None,
    **options: Any,
) -> Any:
    """Upload an ensemble to `repo_id` in one commit through `hub.push_folder` (`options`: its Hub arguments).

    `source`: the folder every member was loaded from, pushed in place with the ensemble's `manifest()` (the
    training run's provenance) and a fresh card; None: `save` writes the ensemble into a temporary folder, which
    is pushed as saved. Returns huggingface_hub's `CommitInfo`."""
    if source is not None:
        published = manifest()
        card = card_files(published, report=report, repo_id=repo_id, dataset=dataset)
        return push_folder(source, repo_id, manifest=published, extra_files=card, **options)
    with tempfile.TemporaryDirectory(prefix="hf_sgdr-push-") as folder:
        save(folder)
        return push_folder(folder, repo_id, **options)
