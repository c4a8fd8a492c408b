"""Any `Trainer` run's `checkpoint-*` folders as snapshots (`SnapshotEnsemble.from_checkpoints`).

A run trained with `cosine` (or any schedule) and `save_steps` leaves `output_dir/checkpoint-<step>/`
folders. Their model files are read under the snapshot folders' safety rules: the weights must be
safetensors (a checkpoint holding only `pytorch_model.bin` is refused, never unpickled), every path stays
inside `output_dir`, and each safetensors header is checked against its file before anything is loaded.
The Trainer's own training-state files beside them (`optimizer.pt`, `scheduler.pt`, `rng_state.pth`,
`training_args.bin`) are pickles too: they are never opened. Each model file gets its size and SHA-256,
so that `save_pretrained` writes a regular, checksummed snapshot folder from the checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..snapshot_format.digests import digest_files
from ..snapshot_format.loading import (
    PICKLE_SUFFIXES,
    SnapshotLoadError,
    check_safetensors_header,
    contained,
    pickle_refusal,
)
from ..snapshot_format.manifest import SnapshotRecord
from .selection import select_members

#: The folder names `transformers.Trainer` gives its checkpoints (`PREFIX_CHECKPOINT_DIR`-step).
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
#: Model files taken from a checkpoint (besides its safetensors weights and their shard index).
MODEL_FILES = ("config.json", "generation_config.json")
SHARD_INDEX = "model.safetensors.index.json"
#: A shard's name in its index: a plain file name of the checkpoint folder (no separator, not `.`/`..`).
PLAIN_NAME = re.compile(r"^(?!\.\.?$)[A-Za-z0-9._-]+$")
TRAINER_STATE = "trainer_state.json"

logger = logging.getLogger(__name__)


def find_checkpoints(output_dir: Path) -> list[Path]:
    """The `checkpoint-<step>` folders of `output_dir`, by step (not by name: 1000 after 500)."""
    if not output_dir.is_dir():
        raise FileNotFoundError(f"output_dir {output_dir} is not a folder: give a Trainer run's output_dir")
    found = [p for p in output_dir.iterdir() if CHECKPOINT_NAME.match(p.name) and p.is_dir()]
    if not found:
        raise SnapshotLoadError(
            f"no checkpoint-* folders in {output_dir}: train with save_strategy='steps' and save_steps=N (or "
            "save_strategy='epoch') so that the Trainer writes checkpoints, or give the folder that holds them"
        )
    return sorted(found, key=lambda p: int(CHECKPOINT_NAME.match(p.name).group(1)))


def select_checkpoints(folders: list[Path], checkpoints: Sequence[str] | int | None) -> list[Path]:
    """All `folders`, the last n (`checkpoints=n`), one (`"checkpoint-500"`) or those named."""
    return select_members("checkpoints", checkpoints, [folder.name for folder in folders], folders, "the output_dir")


def _weight_files(folder: Path) -> list[str]:
    """The safetensors weights of a checkpoint (one file, or the shards its index names)."""
    if (folder / "model.safetensors").is_file():
        return ["model.safetensors"]
    if (folder / SHARD_INDEX).is_file():
        try:
            shards = sorted(set(json.loads((folder / SHARD_INDEX).read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise SnapshotLoadError(f"{folder.name}/{SHARD_INDEX} is not a valid shard index: {error}") from None
        if not shards or not all(isinstance(s, str) and s.endswith(".safetensors") for s in shards):
            raise SnapshotLoadError(f"{folder.name}/{SHARD_INDEX} must map the tensors to .safetensors shards")
        for shard in shards:
            if not PLAIN_NAME.match(shard):
                raise SnapshotLoadError(
                    f"{folder.name}/{SHARD_INDEX} names the shard {shard!r}: a shard must be a plain file name in "
                    "the checkpoint folder (letters, digits, '.', '_', '-'; no folder, no '..')"
                )
        return [SHARD_INDEX, *shards]
    pickles = sorted(p.name for p in folder.iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES))
    weights = [name for name in pickles if name.startswith(("pytorch_model", "model"))]
    if weights:
        raise pickle_refusal(f"{folder.name}/{weights[0]} (the checkpoint has no model.safetensors)")
    if (folder / "adapter_model.safetensors").is_file():
        raise SnapshotLoadError(
            f"{folder.name} holds a PEFT adapter: from_checkpoints reads full-model checkpoints; save the adapters "
            "as snapshots with SGDRCallback, or load the checkpoints with PeftModel.from_pretrained"
        )
    raise SnapshotLoadError(f"{folder.name} has no model.safetensors: not a model checkpoint ({folder})")


def checkpoint_record(folder: Path, index: int, containment: Path) -> SnapshotRecord:
    """Verify one checkpoint's model files (see the module docstring) and describe it as a snapshot record.

    `index` becomes the record's `cycle` (the position in the run); the step, epoch, lr and loss come from the
    checkpoint's `trainer_state.json` when it has one.
    """
    contained(folder, containment, f"checkpoint folder {folder.name!r}")
    names = [*(name for name in MODEL_FILES if (folder / name).is_file()), *_weight_files(folder)]
    if "config.json" not in names:
        raise SnapshotLoadError(f"{folder.name} has no config.json: not a transformers model checkpoint")
    paths = {}
    for name in names:
        path = contained(folder / name, containment, f"{folder.name}/{name}")
        if not path.is_file():
            raise SnapshotLoadError(f"{folder.name}/{name} named by its shard index is missing")
        if name.endswith(".safetensors"):
            check_safetensors_header(path)
        paths[name] = path
    files = digest_files(paths)
    step = int(CHECKPOINT_NAME.match(folder.name).group(1))
    state = _trainer_state(folder)
    last_log = _last_training_log(state, step)
    where = f"{folder.name}/{TRAINER_STATE}"
    epoch = _finite(state.get("epoch"), f"{where} epoch", minimum=0.0)
    lr = _finite(last_log.get("learning_rate"), f"{where} learning_rate", minimum=0.0)
    return SnapshotRecord(
        name=folder.name,
        cycle=index,
        global_step=step,
        scheduler_step=step,
        epoch=epoch,
        lr=[] if lr is None else [lr],
        train_loss=_finite(last_log.get("loss"), f"{where} loss"),
        files=files,
    )


def _finite(value: Any, what: str, minimum: float | None = None) -> float | None:
    """`value` as a finite float (>= `minimum`), else None with a warning: trainer_state.json is informational,
    and a value the manifest cannot hold (NaN, 1e400, 10**400) must not fail a later save half way."""
    if value is None:
        return None
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int beyond any float
        number = math.nan
    if math.isfinite(number) and (minimum is None or number >= minimum):
        return number
    accepted = "a finite number" if minimum is None else f"a finite number >= {minimum:g}"
    logger.warning("ignoring %s = %.60s: not %s", what, repr(value), accepted)
    return None


def _trainer_state(folder: Path) -> dict[str, Any]:
    """`trainer_state.json` (plain JSON, safe to read) or {} when it is absent or unreadable."""
    path = folder / TRAINER_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, RecursionError):  # not UTF-8, not JSON, an int past Python's digit limit, deep nesting
        return {}
    return state if isinstance(state, dict) else {}


def _last_training_log(state: dict[str, Any], step: int) -> dict[str, float]:
    """The last numeric training-log entry (loss, learning_rate) at or before `step`."""
    history = state.get("log_history")
    entries = [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []
    for entry in reversed(entries):
        if isinstance(entry.get("step"), int) and entry["step"] <= step and "loss" in entry:
            return {k: v for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {}
