"""Replacing a whole folder so that a kill at any moment leaves the old content or the new, whole.

The new content is built in a temporary sibling, then the two are exchanged in one atomic step
(`renameat2(RENAME_EXCHANGE)` on Linux), so the target path never lacks a complete folder; the old
content, now under the temporary name, is deleted afterwards. Where the OS or filesystem cannot exchange,
two renames are used (the target is briefly absent). A temporary a killed process left is swept by the
next replacement of the same target.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import stat
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from .atomic import TMP_PREFIX, _fsync_dir, remove_entry

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically; False where this OS or filesystem cannot (nothing moved then)."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # a libc older than glibc 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(first), None, os.fspath(second))


def _sync_tree(root: Path) -> None:
    """fsync every regular file and folder under `root` (links and special files, e.g. a FIFO, are not opened)."""
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
        _fsync_dir(Path(folder))


def _temporaries(target: Path) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(TMP_PREFIX + target.name)}-(\d+)-[0-9a-f]{{8}}$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def sweep_temporaries(target: Path) -> list[Path]:
    """Delete the temporaries of `target` that dead processes left beside it (a replacement cut short)."""
    pattern, removed = _temporaries(target), []
    for entry in target.parent.iterdir() if target.parent.is_dir() else []:
        match = pattern.match(entry.name)
        if match is None or _alive(int(match.group(1))):  # a live process may still be building it
            continue
        remove_entry(entry)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def replacing_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary sibling of `target`; on success it becomes `target` (see the module docstring),
    on any error it is deleted and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(target)
    new = target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    new.mkdir()
    try:
        yield new
        _sync_tree(new)
        if not target.exists():
            os.rename(new, target)
        elif not exchange(new, target):
            old = new.with_name(f"{TMP_PREFIX}{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.rename(target, old)
            os.rename(new, target)
            new = old
        _fsync_dir(target.parent)
    finally:
        shutil.rmtree(new, ignore_errors=True)  # the new folder after a failure, else the old content
