"""Writing one snapshot folder: saved atomically, then described by its files' checksums.

Used by the training side (a snapshot at each cycle end) and by `SnapshotEnsemble.save_pretrained`,
so that every snapshot folder on disk or on the Hub is produced the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..atomic import atomic_directory, fsync_tree
from .digests import digest_files
from .manifest import FileRecord


def record_files(folder: str | os.PathLike[str], spare_cores: int = 0) -> dict[str, FileRecord]:
    """Checksums and size of every regular file under `folder`, keyed by '/'-separated relative path (hashed in
    parallel on every core but `spare_cores`: `digests.digest_files`)."""
    root = Path(folder)
    paths = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise ValueError(f"refusing to record a symlink in a snapshot folder: {path}")
        if path.is_file():
            paths[path.relative_to(root).as_posix()] = path
    return digest_files(paths, spare_cores)


def write_snapshot_folder(folder: str | os.PathLike[str], save: Callable[[Path], None]) -> dict[str, FileRecord]:
    """Run `save(tmp_folder)`, record its files (while they are flushed to the disk), and move it to `folder` in
    one rename.

    If `save` raises, nothing appears at `folder` and the temporary folder is removed.
    """
    with atomic_directory(folder, flush=False) as tmp:
        save(tmp)
        # Flushing to the disk (I/O) overlaps the checksums (CPU, reading the page cache): the training run waits
        # for the last snapshot's write, so its time is not only the writer thread's.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf_sgdr-fsync") as pool:
            flushed = pool.submit(fsync_tree, tmp)
            # One core stays free for the training thread: with a hashing thread on every core, a 2-core machine
            # kept it from running for 40-90 ms per 650 MB (`benchmarks/snapshot_write.py`).
            records = record_files(tmp, spare_cores=1)
            flushed.result()
        if not records:
            raise ValueError(f"saving the snapshot {folder} wrote no files")
    return records
