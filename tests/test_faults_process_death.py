"""Process death: a real training subprocess is SIGKILLed at chosen points inside the writing code (a snapshot's
weights half-written, a snapshot folder in place but not yet in the manifest, the manifest's temporary written but
not renamed, a checkpoint's weights half-written), then resumed from its last complete checkpoint.

The kills come from inside the child (a harness at the process edge: the child wraps the functions that write and
kills itself from within them), so each kill point is hit exactly, every time. Checked: what the killed run leaves
is consistent (every listed snapshot complete, with its checksums; nothing half-written listed), the resumed run
sweeps the temporaries, and it ends with the snapshots (steps, and on CPU the weights) of a run never interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.training import (
    byte_lm_data,
    read_manifest,
    snapshot_weights,
    temporaries,
    tiny_gpt2,
    training_args,
)
from transformers import Trainer

from hf_sgdr.snapshot_format.loading import verify_folder
from hf_sgdr.training import SGDRCallback, SGDRTrainer

TESTS = Path(__file__).resolve().parent
#: Cycles of 3 steps over 12 steps (snapshots at 3, 6, 9, 12), a checkpoint every 4 steps (4, 8, 12).
MAX_STEPS, T_0, SAVE_STEPS = 12, 3, 4
EXPECTED = [("cycle-000", 3), ("cycle-001", 6), ("cycle-002", 9), ("cycle-003", 12)]

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_faults_process_death import run
run(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] or None)
"""


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install_kill(kill: str) -> None:
    """Wrap the writing function of kill point `kill` so that the process kills itself from inside it."""
    import transformers.modeling_utils as modeling_utils

    import hf_sgdr.training.writer as writer

    if kill in ("snapshot-weights", "checkpoint-weights"):
        real_save_file: Callable[..., Any] = modeling_utils.safe_save_file
        where = ".tmp-cycle-001-" if kill == "snapshot-weights" else f"checkpoint-{2 * SAVE_STEPS}"

        def save_file(tensors: Any, filename: str, *args: Any, **kwargs: Any) -> None:
            real_save_file(tensors, filename, *args, **kwargs)
            if where in str(filename):  # killed half-way through the weights: half of the file is on disk
                os.truncate(filename, os.path.getsize(filename) // 2)
                _die()

        modeling_utils.safe_save_file = save_file
    elif kill == "snapshot-before-manifest":
        real_write = writer.write_snapshot_folder

        def write_snapshot_folder(folder: Any, save: Any) -> Any:
            records = real_write(folder, save)
            if Path(folder).name == "cycle-001":  # the folder is in place, the manifest does not list it yet
                _die()
            return records

        writer.write_snapshot_folder = write_snapshot_folder
    elif kill == "manifest-rename":
        real_replace = os.replace

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if Path(src).name.startswith(".tmp-manifest.json-") and b'"cycle-001"' in Path(src).read_bytes():
                _die()  # the new manifest is complete in its temporary, not yet renamed over the old one
            real_replace(src, dst, *args, **kwargs)

        os.replace = replace
    elif kill == "checkpoint-complete":
        import time

        from transformers import TrainerState

        real_write = writer.write_snapshot_folder

        def slow_write_snapshot_folder(folder: Any, save: Any) -> Any:
            if Path(folder).name == "cycle-001":
                time.sleep(3)  # a slow disk: the snapshot of step 6 is still being written at the checkpoint of step 8
            return real_write(folder, save)

        writer.write_snapshot_folder = slow_write_snapshot_folder
        real_save_to_json = TrainerState.save_to_json

        def save_to_json(self: Any, json_path: str) -> None:
            real_save_to_json(self, json_path)
            if f"checkpoint-{2 * SAVE_STEPS}" in str(json_path):
                _die()  # checkpoint-8 is complete (trainer_state.json is the Trainer's last file)

        TrainerState.save_to_json = save_to_json
    elif kill != "none":
        raise ValueError(f"unknown kill point {kill!r}")


def run(out: str | Path, runner: str, kill: str = "none", resume_from: str | None = None) -> None:
    """The training run under test: GPT-2 over SST-2 text with `SGDRTrainer` (`runner="sgdr_trainer"`) or a
    stock `Trainer` with `SGDRCallback` (`runner="callback"`), optimizer resets, checkpoints every 4 steps."""
    _install_kill(kill)
    overrides: dict[str, Any] = {"max_steps": MAX_STEPS, "save_strategy": "steps", "save_steps": SAVE_STEPS}
    if runner == "sgdr_trainer":
        trainer: Trainer = SGDRTrainer(
            model=tiny_gpt2(),
            args=training_args(Path(out), **overrides),
            train_dataset=byte_lm_data(48),
            sgdr_T_0=T_0,
            sgdr_reset_optimizer_state=True,
        )
    else:
        args = training_args(Path(out), lr_scheduler_type="sgdr", lr_scheduler_kwargs={"T_0": T_0}, **overrides)
        trainer = Trainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(48))
        SGDRCallback(sgdr_reset_optimizer_state=True).attach(trainer)
    trainer.train(resume_from_checkpoint=resume_from)


def _child(script: Path, out: Path, runner: str, kill: str, resume_from: str | None = None) -> int:
    result = subprocess.run(
        [sys.executable, str(script), str(out), runner, kill, resume_from or ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=600,
    )
    if result.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(result.stderr.decode()[-3000:])
    return result.returncode


def last_complete_checkpoint(out: Path) -> Path:
    """The newest checkpoint whose `trainer_state.json` (the Trainer's last file of a checkpoint) exists."""
    found = SGDRCallback.last_complete_checkpoint(out)
    assert found is not None
    return Path(found)


def _listed(snapshot_dir: Path) -> list[tuple[str, int]]:
    return [(r.name, r.scheduler_step) for r in read_manifest(snapshot_dir).snapshots]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (in this process; both runners give the same weights, checked below)."""
    out = tmp_path_factory.mktemp("reference")
    torch.set_num_threads(1)
    run(out, "sgdr_trainer")
    return out


@pytest.mark.parametrize(
    ("kill", "runner"),
    [
        ("snapshot-weights", "sgdr_trainer"),
        ("snapshot-before-manifest", "sgdr_trainer"),
        ("manifest-rename", "sgdr_trainer"),
        ("checkpoint-weights", "callback"),
        pytest.param("checkpoint-complete", "sgdr_trainer", marks=pytest.mark.slow),
        pytest.param("checkpoint-complete", "callback", marks=pytest.mark.slow),
    ],
)
def test_sigkill_inside_a_write_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path, reference: Path, kill: str, runner: str
) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    out = tmp_path / "out"
    snapshot_dir = out / "snapshots"
    assert _child(script, out, runner, kill) == -signal.SIGKILL

    # What the killed run left: the kill point was hit, and nothing listed is incomplete.
    stale = temporaries(snapshot_dir)
    checkpoint = last_complete_checkpoint(out)
    if kill == "checkpoint-complete":
        assert checkpoint.name == "checkpoint-8"
        assert _listed(snapshot_dir) == EXPECTED[:2]  # a complete checkpoint implies the snapshots before it
        assert stale == []
    elif kill == "checkpoint-weights":
        # SGDRCallback finishes the snapshot writes before the Trainer starts checkpoint-8
        assert _listed(snapshot_dir) == EXPECTED[:2]
        assert not (out / "checkpoint-8" / "trainer_state.json").exists()
        assert (out / "checkpoint-8" / "model.safetensors").is_file()  # half of it
        assert all(name.startswith((".tmp-cycle-001-", ".tmp-manifest.json-")) for name in stale)
    else:
        assert _listed(snapshot_dir) == EXPECTED[:1]
        if kill == "snapshot-weights":
            (tmp,) = stale
            assert tmp.startswith(".tmp-cycle-001-") and not (snapshot_dir / "cycle-001").exists()
        else:
            assert (snapshot_dir / "cycle-001" / "model.safetensors").is_file()  # written but never listed
            if kill == "snapshot-before-manifest":
                assert stale == []
            else:
                (tmp,) = stale
                assert tmp.startswith(".tmp-manifest.json-")
    verify_folder(snapshot_dir)  # every listed snapshot has all its files, with the recorded checksums
    if kill != "checkpoint-complete":
        assert checkpoint.name == "checkpoint-4"  # after a kill inside checkpoint-8, not that half-written folder

    assert _child(script, out, runner, "none", str(checkpoint)) == 0

    _, records = verify_folder(snapshot_dir)
    assert _listed(snapshot_dir) == EXPECTED == _listed(reference / "snapshots")
    assert [(r.global_step, r.lr) for r in records] == [
        (r.global_step, r.lr) for r in read_manifest(reference / "snapshots").snapshots
    ]
    assert temporaries(snapshot_dir) == []  # swept by the resumed run's first successful write
    assert sorted(p.name for p in snapshot_dir.iterdir()) == [*(name for name, _ in EXPECTED), "manifest.json"]
    assert (out / "checkpoint-8" / "trainer_state.json").is_file() and (out / "checkpoint-12").is_dir()
    for name, _ in EXPECTED:
        ours, theirs = snapshot_weights(snapshot_dir / name), snapshot_weights(reference / "snapshots" / name)
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), (kill, name, key)
