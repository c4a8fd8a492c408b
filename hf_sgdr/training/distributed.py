"""The few collectives snapshot writing needs: only the main process writes, every process learns
whether that worked.

At each sync point (a cycle end, a checkpoint, the end of training) the main process broadcasts
the outcome of its pending writes, so that a failed write raises `SnapshotWriteError` on every rank
instead of leaving the others waiting at the next collective. Without an initialised
`torch.distributed` process group (one process) the calls are local.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


class SnapshotWriteError(RuntimeError):
    """Writing a snapshot or its manifest failed (on the main process)."""


class ProcessSync:
    """Rank information and the status broadcast, over the default `torch.distributed` group."""

    def __init__(self) -> None:
        self.distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes snapshots (global rank 0)."""
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """The main process' `value` on every rank (a small picklable object)."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def raise_on_failure(self, error: BaseException | None, extra: Any = None) -> Any:
        """Collective: raise `SnapshotWriteError` everywhere if the main process' `error` is set.

        `extra` (decided on the main process) rides along and is returned on every rank.
        """
        message, extra = self.broadcast((None if error is None else f"{type(error).__name__}: {error}", extra))
        if message is not None:
            where = "" if self.is_main else f" (reported to rank {self.rank})"
            raise SnapshotWriteError(f"writing a snapshot failed on the main process{where}: {message}") from error
        return extra
