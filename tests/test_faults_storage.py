"""Storage faults while snapshots are written: the write fails for real (the file-size limit of the process, as a
full quota would; a file where the snapshot folder should be), not by a mocked save.

The behaviour under test (docs/safety.md, "A snapshot write fails"): a failed snapshot write stops training with
`SnapshotWriteError` at the next sync point (the next cycle end, checkpoint or the end of training), with a message
naming the path; no checkpoint is written after the failure, so the last checkpoint still implies all its
snapshots; the earlier snapshots, the manifest and that checkpoint stay intact, no temporary is left, and resuming
from the checkpoint redoes the failed snapshot. Tests may run as root, where `chmod` blocks nothing: hence
`RLIMIT_FSIZE`.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.training import (
    assert_checksums,
    byte_lm_data,
    read_manifest,
    temporaries,
    tiny_gpt2,
    training_args,
)
from transformers import AutoModelForCausalLM

from hf_sgdr.snapshot_format.loading import verify_folder
from hf_sgdr.snapshot_format.manifest import SnapshotManifest, SnapshotRecord
from hf_sgdr.training import SGDRTrainer, SnapshotWriteError, SnapshotWriter

TESTS = Path(__file__).resolve().parent
#: File-size limit while the failing snapshot is written: config.json fits, model.safetensors (~0.5 MB) does not.
SIZE_LIMIT = 64 * 1024

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_faults_storage import run
run(sys.argv[1], sys.argv[2], sys.argv[3] or None)
"""


def _limit_file_size_while_writing(snapshot: str) -> None:
    """Make every file write of the process fail with EFBIG ("File too large") while `snapshot` is written."""
    import hf_sgdr.training.writer as writer

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead of failing the write
    real_write: Callable[..., Any] = writer.write_snapshot_folder

    def write_snapshot_folder(folder: Any, save: Any) -> Any:
        if Path(folder).name != snapshot:
            return real_write(folder, save)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (SIZE_LIMIT, hard))
        try:
            return real_write(folder, save)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    writer.write_snapshot_folder = write_snapshot_folder


def run(out: str, fail_snapshot: str, resume_from: str | None = None) -> None:
    """SGDRTrainer, cycles of 3 steps over 15 (snapshots at 3, 6, ..., 15), checkpoints at 4, 8, 12."""
    if fail_snapshot != "none":
        _limit_file_size_while_writing(fail_snapshot)
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(Path(out), max_steps=15, save_strategy="steps", save_steps=4),
        train_dataset=byte_lm_data(48),
        sgdr_T_0=3,
    )
    trainer.train(resume_from_checkpoint=resume_from)


def _child(script: Path, out: Path, fail: str, resume_from: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), str(out), fail, resume_from or ""],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_write_that_fails_for_lack_of_space_stops_training_and_loses_nothing(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    out = tmp_path / "out"
    snapshot_dir = out / "snapshots"

    failed = _child(script, out, "cycle-002")  # the snapshot at step 9 cannot be written

    assert failed.returncode == 1, failed.stderr[-3000:]
    last_line = failed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("hf_sgdr.training.distributed.SnapshotWriteError: writing a snapshot failed")
    assert f"{snapshot_dir / 'cycle-002'}" in last_line  # the error names the snapshot it could not write
    assert "File too large" in failed.stderr
    # Stopped at the next sync point (the cycle end at step 12), before the checkpoint of that step.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    manifest = read_manifest(snapshot_dir)
    assert [(r.name, r.scheduler_step) for r in manifest.snapshots] == [("cycle-000", 3), ("cycle-001", 6)]
    assert sorted(p.name for p in snapshot_dir.iterdir()) == ["cycle-000", "cycle-001", "manifest.json"]
    assert temporaries(snapshot_dir) == []  # the half-written temporary folder was removed
    for record in manifest.snapshots:
        assert_checksums(snapshot_dir, record)
    verify_folder(snapshot_dir)

    resumed = _child(script, out, "none", str(out / "checkpoint-8"))  # space again: resume redoes cycle-002

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _, records = verify_folder(snapshot_dir)
    assert [(r.name, r.scheduler_step) for r in records] == [(f"cycle-{i:03d}", 3 * (i + 1)) for i in range(5)]
    assert temporaries(snapshot_dir) == []
    AutoModelForCausalLM.from_pretrained(snapshot_dir / "cycle-002")


def test_a_file_where_the_snapshot_folder_should_be_stops_training_at_the_first_cycle_end(tmp_path: Path) -> None:
    blocker = tmp_path / "snapshots"
    blocker.write_bytes(b"not a folder")
    trainer = SGDRTrainer(
        model=tiny_gpt2(), args=training_args(tmp_path, max_steps=9), train_dataset=byte_lm_data(48), sgdr_T_0=3
    )
    with pytest.raises(SnapshotWriteError, match=rf"writing a snapshot failed.*{blocker}") as raised:
        trainer.train()
    assert trainer.state.global_step == 3  # the first sync point: the first cycle end
    assert isinstance(raised.value.__cause__, OSError)
    assert blocker.read_bytes() == b"not a folder"  # nothing was written over it or beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshots"]


def test_a_failed_manifest_update_is_reported_with_its_path(tmp_path: Path) -> None:
    """A manifest that cannot be rewritten (a folder sits where its temporary goes) fails the snapshot write."""
    writer = SnapshotWriter(tmp_path, SnapshotManifest())
    assert writer.wait() is None
    record = SnapshotRecord(name="cycle-000", cycle=0, global_step=3, scheduler_step=3)
    (tmp_path / "manifest.json").unlink()
    (tmp_path / "manifest.json").mkdir()  # os.replace(file, folder) fails, for root too
    writer.submit_snapshot(record, lambda folder: (folder / "model.safetensors").write_bytes(b"x"))
    error = writer.wait()
    assert isinstance(error, SnapshotWriteError)
    assert str(error).startswith(f"listing snapshot {tmp_path / 'cycle-000'} in {tmp_path / 'manifest.json'} failed")
    assert isinstance(error.__cause__, IsADirectoryError)
    assert temporaries(tmp_path) == []
    writer.close()
