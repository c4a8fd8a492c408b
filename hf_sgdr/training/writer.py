"""The background snapshot writer: one thread that owns the snapshot folder and its manifest.

Jobs run in submission order: a snapshot (atomic folder write with checksums, then the manifest,
then rotation and the sweep of temporaries a killed run left), a change to a record (eval metrics
or the training loss that arrive after the snapshot), the tokenizer/processor. The training thread
only hands over CPU copies and finished `SnapshotRecord`s; it learns about failures from `wait()`,
which the caller turns into an exception at its next sync point.

Rotation (`max_snapshots`): the manifest first stops listing the oldest snapshots, then their
folders are deleted, so a reader never finds a listed snapshot missing; the snapshot just written
is never the one dropped. A folder a kill left between the two steps is swept when the writer next opens
the folder (a resumed run).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..atomic import TMP_PREFIX, remove_stale_temporaries
from ..snapshot_format.layout import MANIFEST_NAME, is_snapshot_name
from ..snapshot_format.manifest import SnapshotManifest, SnapshotRecord
from ..snapshot_format.storage import write_snapshot_folder
from .distributed import SnapshotWriteError

logger = logging.getLogger(__name__)

#: Nice increment of the writer thread: it uses idle CPU, and yields to training when there is none.
WRITER_NICENESS = 10


def lower_thread_priority() -> None:
    """Lower the calling thread's CPU priority (Linux schedules threads separately; elsewhere a no-op). Threads it
    starts afterwards (the checksums' pool) inherit the lower priority."""
    native_id = threading.get_native_id()
    if sys.platform.startswith("linux") and hasattr(os, "setpriority") and native_id != os.getpid():
        with contextlib.suppress(OSError):
            os.setpriority(
                os.PRIO_PROCESS, native_id, min(19, os.getpriority(os.PRIO_PROCESS, native_id) + WRITER_NICENESS)
            )


def _age(record: SnapshotRecord) -> tuple[int, int]:
    return record.cycle, record.scheduler_step


def _rotated_out(directory: Path, records: list[SnapshotRecord]) -> list[Path]:
    """Snapshot folders a rotation dropped from the manifest but a kill kept on disk: named as snapshots are,
    real folders, listed nowhere, and older than the oldest listed snapshot (a newer unlisted one is a write the
    resumed run repeats). Nothing else in the folder is touched."""
    cycles = [_cycle(record.name) for record in records if is_snapshot_name(record.name)]
    if not cycles or not directory.is_dir():
        return []
    listed, oldest = {record.name for record in records}, min(cycles)
    return sorted(
        entry
        for entry in directory.iterdir()
        if is_snapshot_name(entry.name)
        and entry.name not in listed
        and _cycle(entry.name) < oldest
        and entry.is_dir()
        and not entry.is_symlink()
    )


def _cycle(name: str) -> int:
    return int(name.rpartition("-")[2])


class SnapshotWriter:
    """Writes snapshot folders and `manifest.json` under `directory`, in a background thread.

    Args:
        directory: The snapshot folder (created if missing).
        manifest: The manifest to continue (its header and the records already on disk).
        max_snapshots: Keep only the newest K snapshots; `None` keeps all.
        obsolete: Snapshot folder names of a previous run to delete once the manifest no longer lists them.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        manifest: SnapshotManifest,
        *,
        max_snapshots: int | None = None,
        obsolete: Iterable[str] = (),
    ) -> None:
        self.directory = Path(directory)
        self.max_snapshots = max_snapshots
        self._manifest = manifest
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="hf_sgdr-snapshot-writer", initializer=lower_thread_priority
        )
        self._futures: list[Future[None]] = []
        self._closed = False
        self._submit(self._start, list(obsolete))

    # ------------------------------------------------------------------ training-thread API
    def submit_snapshot(self, record: SnapshotRecord, save: Callable[[Path], None]) -> None:
        """Write the folder `record.name` with `save(tmp_folder)`, then list `record` in the manifest."""
        self._submit(self._write_snapshot, record, save)

    def update_record(self, name: str, **changes: Any) -> None:
        """Change fields of the listed record `name` (ignored if it is not listed, e.g. after a failed write)."""
        self._submit(self._update_record, name, changes)

    def save_processor(self, processor: Any) -> None:
        """Save the tokenizer / processor once, beside the snapshot folders."""
        self._submit(self._save_processor, processor)

    def busy(self) -> bool:
        """True while a submitted job is still queued or running."""
        return any(not future.done() for future in self._futures)

    def wait(self) -> BaseException | None:
        """Block until every submitted job is done; return the first error (and forget it), else `None`."""
        futures, self._futures = self._futures, []
        first = None
        for future in futures:
            error = future.exception()
            if error is not None and first is None:
                first = error
            elif error is not None:
                logger.error("another snapshot write failed too: %s", error)
        return first

    def manifest(self) -> SnapshotManifest:
        """A copy of the manifest as last written (waits for pending jobs)."""
        error = self.wait()
        if error is not None:
            raise error
        return replace(self._manifest, snapshots=list(self._manifest.snapshots))

    def close(self) -> BaseException | None:
        """`wait()`, then stop the thread; later jobs run in the caller's thread."""
        error = self.wait()
        self._executor.shutdown(wait=True)
        self._closed = True
        return error

    def _submit(self, job: Callable[..., None], *args: Any) -> None:
        if not self._closed:
            self._futures.append(self._executor.submit(job, *args))
            return
        done: Future[None] = Future()  # after close(): run in the caller's thread
        try:
            job(*args)
            done.set_result(None)
        except Exception as error:
            done.set_exception(error)
        self._futures.append(done)

    # ------------------------------------------------------------------ background jobs
    def _start(self, obsolete: list[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._manifest.save(self.directory)
        listed = {record.name for record in self._manifest.snapshots}
        for name in obsolete:
            if name not in listed and is_snapshot_name(name):
                shutil.rmtree(self.directory / name, ignore_errors=True)
        for folder in _rotated_out(self.directory, self._manifest.snapshots):
            logger.info("deleted %s: rotated out of the manifest by a run killed before it deleted it", folder.name)
            shutil.rmtree(folder, ignore_errors=True)

    def _write_snapshot(self, record: SnapshotRecord, save: Callable[[Path], None]) -> None:
        folder = self.directory / record.name
        try:
            record.files = write_snapshot_folder(folder, save)
        except Exception as error:  # name the path: the underlying error often does not (e.g. safetensors' EFBIG)
            raise SnapshotWriteError(f"writing snapshot {folder} failed: {type(error).__name__}: {error}") from error
        others = [r for r in self._manifest.snapshots if r.name != record.name]
        kept = sorted([*others, record], key=_age)
        if self.max_snapshots is not None and len(kept) > self.max_snapshots:
            kept = kept[-self.max_snapshots :]
            if not any(r is record for r in kept):
                kept = sorted([*kept[1:], record], key=_age)
        dropped = [r for r in others if not any(r is k for k in kept)]
        self._manifest.snapshots = kept
        try:
            self._manifest.save(self.directory)
        except Exception as error:
            raise SnapshotWriteError(
                f"listing snapshot {folder} in {self.directory / MANIFEST_NAME} failed: {type(error).__name__}: {error}"
            ) from error
        for old in dropped:
            shutil.rmtree(self.directory / old.name, ignore_errors=True)
            logger.info("deleted snapshot %s (max_snapshots=%s)", old.name, self.max_snapshots)
        remove_stale_temporaries(self.directory)

    def _update_record(self, name: str, changes: dict[str, Any]) -> None:
        for record in self._manifest.snapshots:
            if record.name == name:
                for key, value in changes.items():
                    setattr(record, key, value)
                self._manifest.save(self.directory)
                return

    def _save_processor(self, processor: Any) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}processor-", dir=self.directory))
        try:
            processor.save_pretrained(str(tmp))
            for entry in sorted(tmp.iterdir()):
                if entry.name == MANIFEST_NAME or is_snapshot_name(entry.name):
                    raise ValueError(f"the processor wrote {entry.name!r}, a name the snapshot folder reserves")
                target = self.directory / entry.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(entry, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
