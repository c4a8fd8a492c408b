"""A run SIGKILLed between the rotation's manifest update and the deletion of the snapshot it rotated out
(`max_snapshots`) leaves that folder listed nowhere; the resumed run sweeps it when its writer opens the folder,
and touches nothing else there (other names, newer unlisted snapshot folders, links)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers.training import byte_lm_data, read_manifest, tiny_gpt2, training_args

from hf_sgdr.snapshot_format.loading import verify_folder
from hf_sgdr.training import SGDRCallback, SGDRTrainer

TESTS = Path(__file__).resolve().parent
SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_rotation_sweep import run
run(sys.argv[1], sys.argv[2] == "kill", sys.argv[3] or None)
"""


def run(out: str, kill: bool, resume_from: str | None) -> None:
    """Cycles of 3 steps over 12 (snapshots at 3, 6, 9, 12), keeping 2, a checkpoint every 4 steps; with `kill`,
    the process dies inside the first rotation, right before it deletes the snapshot it rotated out."""
    if kill:
        import hf_sgdr.training.writer as writer

        real_rmtree = writer.shutil.rmtree

        def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
            if Path(path).name == "cycle-000":
                os.kill(os.getpid(), signal.SIGKILL)
            real_rmtree(path, *args, **kwargs)

        writer.shutil.rmtree = rmtree
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(Path(out), max_steps=12, save_strategy="steps", save_steps=4),
        train_dataset=byte_lm_data(48),
        sgdr_T_0=3,
        max_snapshots=2,
    )
    trainer.train(resume_from_checkpoint=resume_from)


def _child(script: Path, out: Path, kill: bool, resume_from: str | None = None) -> int:
    result = subprocess.run(
        [sys.executable, str(script), str(out), "kill" if kill else "", resume_from or ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=600,
    )
    if result.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(result.stderr.decode()[-3000:])
    return result.returncode


def test_a_snapshot_rotated_out_before_a_kill_is_swept_on_resume(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    out = tmp_path / "out"
    snapshot_dir = out / "snapshots"
    assert _child(script, out, kill=True) == -signal.SIGKILL
    assert [r.name for r in read_manifest(snapshot_dir).snapshots] == ["cycle-001", "cycle-002"]
    assert (snapshot_dir / "cycle-000" / "model.safetensors").is_file()  # listed nowhere, left on disk
    # What else may lie there, and must stay: other names, a link named as a snapshot, a newer unlisted folder.
    for name in ("notes", "cycle-00", "cycle-000.bak", "cycle-0000x"):
        (snapshot_dir / name).mkdir()
    (snapshot_dir / "cycle-0000").symlink_to(tmp_path)
    (snapshot_dir / "cycle-009").mkdir()

    checkpoint = SGDRCallback.last_complete_checkpoint(out)
    assert checkpoint is not None and checkpoint.endswith("checkpoint-8")
    assert _child(script, out, kill=False, resume_from=checkpoint) == 0

    _, records = verify_folder(snapshot_dir)
    assert [r.name for r in records] == ["cycle-002", "cycle-003"]
    assert sorted(p.name for p in snapshot_dir.iterdir()) == [
        "cycle-00",
        "cycle-000.bak",
        "cycle-0000",
        "cycle-0000x",
        "cycle-002",
        "cycle-003",
        "cycle-009",
        "manifest.json",
        "notes",
    ]
