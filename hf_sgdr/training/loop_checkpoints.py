"""Checkpoints of a plain Accelerate loop: saved atomically, found again, resumed mid-epoch exactly.

`accelerator.save_state` writes a folder file by file, so a run killed meanwhile leaves a folder that
looks like a checkpoint and is not. `save_checkpoint` writes into a temporary folder that is renamed to
`step_N` once every process is done, so any `step_N` that `latest_checkpoint` finds is complete. A run
resumed in the middle of an epoch must see the batches and dropout masks of an uninterrupted one:
`accelerator.load_state` restores the RNGs (and, registered there, the scheduler and
`SGDRAccelerateHelper` with its step count), `ResumePoint` says which epoch goes on and how many of its
batches were consumed, and `epoch_batches` skips those without drawing from the restored RNG. The loop
that uses them is in the `hf_sgdr.training.accelerate_loop` docstring and in `recipes/glue.py`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from ..atomic import TMP_PREFIX, replace_directory
from ..validation import check_int

#: Checkpoint folders are `step_N`, N the optimizer steps done (the name `run_glue_no_trainer.py` uses).
CHECKPOINT_PREFIX = "step_"
#: The value of `resume_from_checkpoint` that asks for the newest complete checkpoint.
LATEST = "latest"


def checkpoint_folder(output_dir: str | os.PathLike[str], step: int) -> Path:
    """`output_dir/step_N`: where `save_checkpoint` puts the checkpoint of optimizer step `step`."""
    return Path(output_dir) / f"{CHECKPOINT_PREFIX}{check_int('step', step, minimum=0)}"


def save_checkpoint(accelerator: Accelerator, output_dir: str | os.PathLike[str], step: int) -> Path:
    """`accelerator.save_state` into `output_dir/step_N`, atomically; call it on every process.

    Every process writes its part into `output_dir/.tmp-step_N`, which the main process renames once all
    are done (replacing an older `step_N`). A run killed meanwhile leaves only the temporary folder:
    `latest_checkpoint` ignores it and the next save of that step starts it afresh.
    """
    final = checkpoint_folder(output_dir, step)
    tmp = final.with_name(f"{TMP_PREFIX}{final.name}")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # what a save cut short left
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_directory(tmp, final)
    accelerator.wait_for_everyone()
    return final


def latest_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """The `step_N` folder of `output_dir` with the largest N, or None when there is none (or no folder).

    Temporary folders (a save cut short), files and other names are ignored: a `step_N` folder only
    appears once `save_checkpoint` finished it.
    """
    root = Path(output_dir)
    steps = {}
    for entry in root.iterdir() if root.is_dir() else ():
        step = entry.name.removeprefix(CHECKPOINT_PREFIX)
        if entry.name.startswith(CHECKPOINT_PREFIX) and step.isdigit() and entry.is_dir():
            steps[int(step)] = entry
    return steps[max(steps)] if steps else None


def find_checkpoint(
    resume_from_checkpoint: str | os.PathLike[str] | None, output_dir: str | os.PathLike[str]
) -> Path | None:
    """The checkpoint to resume from, as `--resume_from_checkpoint` names it: None for a fresh run; for
    ``"latest"`` the newest complete one in `output_dir` (None when there is none yet, so one command line
    both starts and resumes a run); else the folder given, which must exist and not be a temporary one.
    """
    if resume_from_checkpoint is None:
        return None
    if str(resume_from_checkpoint) == LATEST:
        return latest_checkpoint(output_dir)
    path = Path(resume_from_checkpoint)
    if path.name.startswith(TMP_PREFIX):
        raise ValueError(
            f"resume_from_checkpoint={str(path)!r} is a checkpoint whose save never finished; "
            f"pass a {CHECKPOINT_PREFIX}N folder or {LATEST!r}"
        )
    if not path.is_dir():
        raise FileNotFoundError(
            f"resume_from_checkpoint={str(path)!r} is not a folder; pass a checkpoint folder "
            f"({CHECKPOINT_PREFIX}N) or {LATEST!r} for the newest one in output_dir"
        )
    return path


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run goes on: the epoch, and how many of its batches the checkpoint had consumed
    (micro-batches, so `gradient_accumulation_steps` per optimizer step)."""

    epoch: int
    consumed_batches: int

    @classmethod
    def after(cls, completed_steps: int, steps_per_epoch: int, gradient_accumulation_steps: int = 1) -> ResumePoint:
        """The point after `completed_steps` optimizer steps of `steps_per_epoch` each (0 for a fresh run).

        Every optimizer step but an epoch's last consumes `gradient_accumulation_steps` batches, so a
        checkpoint inside an epoch has consumed `steps * gradient_accumulation_steps` of its batches.
        """
        epoch, steps_into_epoch = divmod(
            check_int("completed_steps", completed_steps, minimum=0),
            check_int("steps_per_epoch", steps_per_epoch, minimum=1),
        )
        return cls(
            epoch, steps_into_epoch * check_int("gradient_accumulation_steps", gradient_accumulation_steps, minimum=1)
        )

    def skip(self, epoch: int) -> int:
        """Batches to leave out at the start of `epoch`: the consumed ones in the resumed epoch, else none."""
        return self.consumed_batches if epoch == self.epoch else 0


def epoch_batches(accelerator: Accelerator, dataloader: Any, epoch: int, *, skip: int = 0) -> Iterable[Any]:
    """The batches of `dataloader` in `epoch` (its sampler reshuffled for that epoch, as
    `set_epoch` does), without the first `skip`, which an interrupted run already trained on.

    Skipping is done by `accelerator.skip_first_batches`, without drawing from the global torch RNG:
    an uninterrupted run started the epoch's loader (which draws a seed) before the checkpoint's RNG
    state was taken, so a run resumed mid-epoch must not draw again, or every dropout mask after the
    resume would shift. The batch order of a seedable sampler comes from the seed at `accelerator.prepare`
    (not from the checkpoint), so the resumed run must set the same seed before preparing the dataloader.
    """
    skip = check_int("skip", skip, minimum=0)
    if hasattr(dataloader, "set_epoch"):  # prepared dataloaders (and seedable samplers) have it
        dataloader.set_epoch(epoch)
    if not skip:
        return dataloader
    return _keeping_rng(accelerator.skip_first_batches(dataloader, skip))


def _keeping_rng(dataloader: Any) -> Iterator[Any]:
    state = torch.get_rng_state()
    iterator = iter(dataloader)
    first = next(iterator, None)  # the loader starts (and draws) on its first batch
    torch.set_rng_state(state)
    if first is not None:
        yield first
        yield from iterator
