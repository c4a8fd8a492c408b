"""One training record for both loops: the manifest's `training` section has the same keys from the `Trainer`
and from a plain Accelerate loop, and a snapshot's `train_loss` is the cycle's mean loss in both, whatever the
Trainer's logging interval."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.training import (
    byte_lm_data,
    read_manifest,
    tiny_accelerate_run,
    tiny_gpt2,
    training_args,
)

from hf_sgdr.training import SGDRTrainer


def _trainer_run(output_dir: Path, logging_steps: int) -> SGDRTrainer:
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(output_dir, max_steps=9, logging_steps=logging_steps),
        train_dataset=byte_lm_data(48),
        sgdr_T_0=3,
    )
    trainer.train()
    return trainer


def test_trainer_records_the_cycle_mean_loss_whatever_the_logging_interval(tmp_path: Path) -> None:
    every_step = _trainer_run(tmp_path / "every", logging_steps=1)
    losses = {entry["step"]: entry["loss"] for entry in every_step.state.log_history if "loss" in entry}
    assert sorted(losses) == list(range(1, 10))
    _trainer_run(tmp_path / "rare", logging_steps=2)  # logs at 2, 3 (cycle end), 4, 6, 8, 9
    for folder in ("every", "rare"):
        records = read_manifest(tmp_path / folder / "snapshots").snapshots
        assert [r.global_step for r in records] == [3, 6, 9]
        for record in records:
            cycle = range(record.global_step - 2, record.global_step + 1)
            assert record.train_loss == pytest.approx(sum(losses[s] for s in cycle) / 3, rel=1e-5), folder


def test_both_loops_write_the_same_training_keys(tmp_path: Path) -> None:
    _trainer_run(tmp_path / "trainer", logging_steps=1000)
    trainer_keys = read_manifest(tmp_path / "trainer" / "snapshots").training
    tiny_accelerate_run(tmp_path / "loop", num_training_steps=6)
    loop_keys = read_manifest(tmp_path / "loop" / "snapshots").training
    assert set(loop_keys) == set(trainer_keys)
    assert (loop_keys["loop"], trainer_keys["loop"]) == ("accelerate", "transformers.Trainer")
    assert loop_keys["learning_rate"] == trainer_keys["learning_rate"] == pytest.approx(1e-3)
    assert loop_keys["num_training_steps"] == 6 and trainer_keys["num_training_steps"] == 9
