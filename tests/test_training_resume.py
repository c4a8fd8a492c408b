"""Exact resume: a run killed with SIGKILL after a mid-cycle checkpoint and resumed with
`train(resume_from_checkpoint=True)` gives the lr trace, the snapshot steps and cycle losses and (CPU, fixed seeds) the
snapshot weights of an uninterrupted run, with the running weight average carried by the checkpoint and
the snapshot written before the kill neither rewritten nor duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from helpers.training import (
    byte_lm_data,
    read_manifest,
    snapshot_weights,
    tiny_gpt2,
    training_args,
)
from transformers import TrainerCallback

from hf_sgdr.training import SGDRTrainer

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_training_resume import run
run(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume")
"""


class _Trace(TrainerCallback):
    """Appends each step's lrs to `lr_trace.jsonl`; kills the process with SIGKILL at `kill_at`."""

    def __init__(self, out: str, kill_at: int) -> None:
        self.path, self.kill_at = os.path.join(out, "lr_trace.jsonl"), kill_at

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        with open(self.path, "a") as handle:
            handle.write(json.dumps([state.global_step, lr_scheduler.get_last_lr()]) + "\n")
        if state.global_step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def run(out: str | Path, kill_at: int = 0, resume: bool = False) -> None:
    """The training run under test: GPT-2 over SST-2 text, cycles of 6 steps, averaging from mid-cycle,
    optimizer resets, a checkpoint every 10 steps."""
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(Path(out), max_steps=24, save_strategy="steps", save_steps=10),
        train_dataset=byte_lm_data(48),
        sgdr_T_0=6,
        swa_start=0.5,
        sgdr_reset_optimizer_state=True,
    )
    trainer.add_callback(_Trace(str(out), kill_at))
    trainer.train(resume_from_checkpoint=True if resume else None)


def _start(script: Path, out: Path, kill_at: int, mode: str) -> subprocess.Popen[bytes]:
    out.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(script), str(out), str(kill_at), mode],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(process: subprocess.Popen[bytes]) -> int:
    _, stderr = process.communicate(timeout=600)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(stderr.decode()[-3000:])
    return process.returncode


def _trace(out: Path) -> dict[int, list[float]]:
    lines = (out / "lr_trace.jsonl").read_text().splitlines()
    return {step: lrs for step, lrs in map(json.loads, lines)}  # a resumed step overrides the killed one


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    # A run killed at step 11, after the checkpoint at step 10 (cycle 1 spans steps 6-12; its averaging
    # window, steps 9-12, is half done), and meanwhile the uninterrupted reference in this process.
    killed = _start(script, interrupted, 11, "fresh")
    reference.mkdir()
    run(reference)
    assert _finish(killed) == -signal.SIGKILL

    snapshot_dir = interrupted / "snapshots"
    assert [r.name for r in read_manifest(snapshot_dir).snapshots] == ["cycle-000"]
    assert (interrupted / "checkpoint-10" / "sgdr_state.pt").is_file()
    averaged_state = torch.load(interrupted / "checkpoint-10" / "sgdr_state.pt", weights_only=True)
    assert (averaged_state["scheduler_step"], averaged_state["averager"]["count"]) == (10, 2)
    first_write = os.stat(snapshot_dir / "cycle-000" / "model.safetensors").st_mtime_ns

    assert _finish(_start(script, interrupted, 0, "resume")) == 0

    assert _trace(interrupted) == _trace(reference)
    assert sorted(_trace(reference)) == list(range(1, 25))
    expected, resumed = read_manifest(reference / "snapshots"), read_manifest(snapshot_dir)
    assert [(r.name, r.global_step, r.scheduler_step) for r in resumed.snapshots] == [
        ("cycle-000", 6, 6),
        ("cycle-001", 12, 12),
        ("cycle-002", 18, 18),
        ("cycle-003", 24, 24),
    ]
    # train_loss too: the mean over the whole cycle, the steps before the resume included
    assert [(r.name, r.scheduler_step, r.lr, r.num_averaged, r.train_loss) for r in resumed.snapshots] == [
        (r.name, r.scheduler_step, r.lr, r.num_averaged, r.train_loss) for r in expected.snapshots
    ]
    assert all(r.averaged and r.num_averaged == 4 for r in resumed.snapshots)
    assert os.stat(snapshot_dir / "cycle-000" / "model.safetensors").st_mtime_ns == first_write  # not rewritten
    for record in expected.snapshots:
        ours, theirs = (
            snapshot_weights(snapshot_dir / record.name),
            snapshot_weights(reference / "snapshots" / record.name),
        )
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert torch.equal(ours[name], theirs[name]), (record.name, name)
