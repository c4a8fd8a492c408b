"""The events go through the Trainer's logging: `state.log_history`, TensorBoard (scalars and the
snapshot path as text), and one console line per snapshot through `logging`."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from helpers.training import (
    byte_lm_data,
    tiny_gpt2,
    training_args,
)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hf_sgdr.training import SGDRTrainer


def test_cycle_events_reach_log_history_tensorboard_and_the_console(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(tmp_path, max_steps=12, logging_steps=5, report_to=["tensorboard"]),
        train_dataset=byte_lm_data(48),
        sgdr_T_0=4,
        sgdr_reset_optimizer_state=True,
    )
    with caplog.at_level(logging.INFO, logger="hf_sgdr.training"):
        trainer.train()

    history = {h["step"]: h for h in trainer.state.log_history if "loss" in h}
    assert sorted(history) == [4, 5, 8, 10, 12]  # every logging_steps, plus each cycle end
    for step, cycle in ((4, 0), (8, 1), (12, 2)):
        entry = history[step]
        # The line's cycle is the logged step's own (as its learning_rate is), never one that does not run.
        assert entry["sgdr/completed_cycle"] == entry["sgdr/cycle"] == cycle
        assert entry["sgdr/restart"] == 1.0 and entry["sgdr/optimizer_reset"] == 1.0
        assert entry["sgdr/snapshot"] == str(tmp_path / "snapshots" / f"cycle-{cycle:03d}")
    assert "sgdr/restart" not in history[5] and history[5]["sgdr/cycle"] == 1.0 and history[10]["sgdr/cycle"] == 2.0

    (run,) = {p.parent for p in (tmp_path / "runs").rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(run)).Reload()
    restarts = [(e.step, e.value) for e in events.Scalars("train/sgdr/restart")]
    assert restarts == [(4, 1.0), (8, 1.0), (12, 1.0)]
    assert [(e.step, e.value) for e in events.Scalars("train/sgdr/cycle")] == [
        (4, 0.0),
        (5, 1.0),
        (8, 1.0),
        (10, 2.0),
        (12, 2.0),
    ]
    assert "train/sgdr/snapshot/text_summary" in events.Tags()["tensors"]

    stalls = [(e.step, e.value) for e in events.Scalars("train/sgdr/snapshot_stall_ms")]
    assert [step for step, _ in stalls] == [4, 8, 12] and all(value >= 0 for _, value in stalls)
    assert [history[step]["sgdr/snapshot_stall_ms"] for step, _ in stalls] == pytest.approx([v for _, v in stalls])

    lines = [r.getMessage() for r in caplog.records if r.name == "hf_sgdr.training.cycle_end"]
    lines = [line for line in lines if line.startswith("SGDR cycle")]  # not a wait for a slow write, if any
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert lines[0].startswith("SGDR cycle 0 ended at step 4 (lr ")
    snapshot = re.escape(str(tmp_path / "snapshots" / "cycle-000"))
    assert re.search(rf"optimizer state reset: snapshot {snapshot} \(training thread \d+\.\d ms\)$", lines[0])
