"""What a careless or hostile author does to a snapshot folder or a Trainer output_dir, with the checksums made
consistent again (so that only the check under test can refuse it)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hf_sgdr.snapshot_format.storage import record_files


def edit_manifest(folder: Path, edit: Callable[[dict], object]) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))


def rerecord(folder: Path, name: str) -> None:
    """Make the manifest's sizes and checksums of snapshot `name` match its (altered) files."""
    files = {k: {"sha256": v.sha256, "size": v.size} for k, v in record_files(folder / name).items()}
    edit_manifest(folder, lambda data: next(s for s in data["snapshots"] if s["name"] == name).update(files=files))


def edit_weights(path: Path, edit: Callable[[dict[str, torch.Tensor]], object]) -> None:
    """Rewrite a safetensors file with `edit` applied to its tensors (a real file, as save_pretrained writes)."""
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def edit_header(path: Path, edit: Callable[[dict], object]) -> None:
    """Rewrite a safetensors file's JSON header with `edit` applied (the tensor data unchanged)."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size :])


def write_checkpoints(run: Path, model: torch.nn.Module, steps: tuple[int, ...], state: dict | None = None) -> Path:
    """A Trainer-style output_dir: `checkpoint-<step>/` with `model`'s safetensors and config, and a
    `trainer_state.json` (`state`, or a plain log of each step's loss)."""
    for step in steps:
        checkpoint = run / f"checkpoint-{step}"
        model.save_pretrained(checkpoint)
        history = [{"step": s, "loss": 1.0 / s, "learning_rate": 1e-3} for s in range(1, step + 1)]
        text = json.dumps(state if state is not None else {"epoch": step / 10, "log_history": history})
        (checkpoint / "trainer_state.json").write_text(text)
    return run
