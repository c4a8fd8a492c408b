"""Crash-safe file and folder writes: write beside the target under a temporary name, then rename.

A reader (or a resumed run) therefore sees either the old content or the complete new one, never a
half-written file or a folder that looks complete but is not. Temporaries carry the `TMP_PREFIX` so
that loaders skip them and `remove_stale_temporaries` can sweep what a killed process left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def _temporary_sibling(path: Path) -> Path:
    return path.parent / f"{TMP_PREFIX}{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class OutputPathError(ValueError, OSError):
    """An output target that is not a regular file (a folder, a symlink, a FIFO, a device, a socket): a bad
    argument (`ValueError`, one line on the command line) and a failed write (`OSError`, as the write would be)."""


class OutputFolderError(OutputPathError, IsADirectoryError):
    """An output target that is a folder (an `IsADirectoryError`, as renaming over it would raise)."""


def check_output_file(path: str | os.PathLike[str], what: str = "output", *, folder_must_exist: bool = False) -> Path:
    """`path` as a `Path` if it is absent or a regular file, else `OutputPathError` naming `what`.

    The writers here rename a temporary over their target, which would replace a symlink, a FIFO or a device
    node with a regular file (and fail late on a folder): such targets are refused instead, never written
    through. A path through a file (`notes.txt/report.json`) is refused, and with `folder_must_exist` a missing
    folder (a command line's output: a mistyped folder is not created). Call it before the work whose result goes
    there, so that a bad target fails first.
    """
    target = Path(path)
    blocking = file_on_the_way(target)
    if blocking is not None:
        raise OutputPathError(f"{what} {target}: {blocking} is a file, not a folder; give a path inside a folder")
    if folder_must_exist and not target.parent.is_dir():
        raise OutputPathError(f"the folder of {what} {target} does not exist ({target.parent}); create it first")
    kind = _special_kind(target)
    if kind is not None:
        raise (OutputFolderError if kind == "a folder" else OutputPathError)(
            f"{what} {target} is {kind}: hf_sgdr writes a regular file there (a temporary renamed over it), so it "
            "refuses to replace anything else; give the path of a new or regular file"
        )
    return target


def file_on_the_way(path: Path) -> Path | None:
    """The one of `path`'s parent folders that exists but is no folder (a file), if any: nothing can be read or
    written through it, and the OS says only "Not a directory"."""
    return next((part for part in reversed(path.parents) if part.exists() and not part.is_dir()), None)


def _special_kind(path: Path) -> str | None:
    """What `path` is when it exists and is not a regular file (symlinks not followed)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISLNK: "a symlink", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "a device or special file")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename); a target that is not a
    regular file is refused (`check_output_file`)."""
    target = check_output_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(target)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """`obj` as the JSON text hf_sgdr writes: indented, key-sorted; non-finite floats are refused."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write `obj` as `json_text` atomically."""
    return atomic_write_text(path, json_text(obj))


def fsync_tree(root: Path) -> None:
    """Flush every file under `root`, and the folders' entries, to the disk."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(Path(folder) / name, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], *, flush: bool = True) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `path` in one rename, on error it is removed.

    An existing `path` is moved aside first and deleted only after the new folder is in place. `flush=False`: the
    caller has flushed the folder's files to the disk itself (`fsync_tree`) before the block ends.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(target)
    tmp.mkdir()
    try:
        yield tmp
        replace_directory(tmp, target, flush=flush)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_directory(source: str | os.PathLike[str], target: str | os.PathLike[str], *, flush: bool = True) -> Path:
    """Put the finished folder `source` (a sibling of `target`) at `target` in one rename, after syncing
    its files (unless `flush=False`: the caller did). An existing `target` is moved aside first and deleted only
    after the new folder is in place."""
    source, target = Path(source), Path(target)
    if flush:
        fsync_tree(source)
    old = None
    if target.exists():
        old = _temporary_sibling(target)
        os.replace(target, old)
    os.replace(source, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporaries a killed process left in `folder` (not recursive); return what was removed."""
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.name.startswith(TMP_PREFIX):
            remove_entry(entry)
            removed.append(entry)
    return removed


def remove_entry(entry: Path) -> None:
    """Delete `entry` as it is, best effort: a folder with its content, anything else (a link too) by unlinking it."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            entry.unlink()
