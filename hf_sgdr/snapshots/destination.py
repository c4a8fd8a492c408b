"""What `SnapshotEnsemble.save_pretrained` may replace, and what of the old folder it keeps.

The ensemble is written whole into a temporary sibling and then takes the destination's place
(`folder_swap.replacing_folder`), so a kill leaves the old ensemble or the new one. The destination must
therefore be new, empty, or an ensemble folder (it holds a manifest.json): a non-empty folder of something
else is refused rather than replaced. Of an old ensemble folder, the entries the ensemble format does not
own (a `.git`, a `LICENSE`, notes) are carried into the new folder (hard links where possible).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..atomic import TMP_PREFIX
from ..snapshot_format.layout import CARD_NAME, MANIFEST_NAME, PLOT_NAME, is_snapshot_name
from ..snapshot_format.manifest import ManifestError, SnapshotManifest

#: Root entries an ensemble folder's format owns: replaced by the new ensemble's, never carried over.
OWNED = (MANIFEST_NAME, PLOT_NAME, CARD_NAME)


def save_target(path: str | os.PathLike[str]) -> Path:
    """The folder `save_pretrained` writes to (a link is followed: the folder it names is replaced).

    Refused: a path that is not a folder, a non-empty folder without a manifest.json, and the folder this process
    works in (or one above it)."""
    target = Path(path)
    if target.is_symlink():
        target = target.resolve()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"save_directory {path} exists and is not a folder; give a new or empty folder")
    if target.is_dir() and Path.cwd().resolve().is_relative_to(target.resolve()):
        raise ValueError(
            f"save_directory {path} holds this process's working directory, which a folder replaced whole would "
            "leave deleted under it; change directory first, or give another folder"
        )
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST_NAME).is_file():
        raise ValueError(
            f"save_directory {path} is not empty and holds no snapshot ensemble (no {MANIFEST_NAME}): save_pretrained "
            "replaces the folder as a whole; give a new or empty folder, or an ensemble folder to replace"
        )
    return target


def _owned(old: Path) -> set[str]:
    """The root entries of the old ensemble folder that belong to that ensemble (snapshots, manifest, card)."""
    try:
        listed = {record.name.split("/")[0] for record in SnapshotManifest.load(old).snapshots}
    except (ManifestError, OSError):
        listed = set()
    return listed | set(OWNED)


def _link_or_copy(source: str, target: str) -> None:
    """A hard link (the entry itself, whatever it is); a copy only of a regular file (a FIFO or device is never
    read)."""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:  # links not allowed here
        if not stat.S_ISREG(os.lstat(source).st_mode):
            raise
        shutil.copy2(source, target, follow_symlinks=False)


def carry_over(old: Path, new: Path) -> None:
    """Put into `new` the entries of the `old` ensemble folder that neither belong to the old ensemble nor were
    written into `new` (symlinks stay links, never followed)."""
    if not old.is_dir():
        return
    owned = _owned(old)
    for entry in old.iterdir():
        name = entry.name
        if name in owned or is_snapshot_name(name) or name.startswith(TMP_PREFIX) or os.path.lexists(new / name):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), new / name)
        elif entry.is_dir():
            shutil.copytree(entry, new / name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(new / name))
