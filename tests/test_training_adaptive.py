"""The adaptive hook: the callback feeds every evaluation to `AdaptiveSGDR.observe`, the cycle it
lengthens moves the next snapshot, and the extension is logged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.training import (
    byte_lm_data,
    read_manifest,
    tiny_gpt2,
    training_args,
)

from hf_sgdr import AdaptiveSGDR
from hf_sgdr.training import SGDRTrainer


@pytest.mark.parametrize("monitor_from", ["scheduler", "metric_for_best_model"])
def test_evaluations_extend_cycles_and_snapshots_follow_the_realised_lengths(tmp_path: Path, monitor_from: str) -> None:
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # A metric that never improves: after `patience` = 2 evaluations without improvement the current
    # cycle doubles (once per cycle). Cycle 0: evaluations at steps 1 (best), 2, 3 -> 4 becomes 8 steps;
    # cycle 1 starts at 8: evaluations at 9 (best), 10, 11 -> it ends at 16 instead of 12.
    by_scheduler = monitor_from == "scheduler"
    scheduler = AdaptiveSGDR(
        optimizer,
        initial_T_0=4,
        patience=2,
        extension_factor=2.0,
        max_extensions_per_cycle=1,
        monitor="constant" if by_scheduler else None,
    )
    extra = {} if by_scheduler else {"metric_for_best_model": "constant", "greater_is_better": True}
    trainer = SGDRTrainer(
        model=model,
        args=training_args(tmp_path, max_steps=16, eval_strategy="steps", eval_steps=1, **extra),
        train_dataset=byte_lm_data(48),
        eval_dataset=byte_lm_data(4),
        compute_metrics=lambda prediction: {"constant": 1.0},
        optimizers=(optimizer, scheduler),
    )
    trainer.train()

    assert scheduler.num_extensions == 2
    assert scheduler.effective_monitor == ("constant" if by_scheduler else "eval_constant")
    assert [(c.cycle, c.start, c.length) for c in scheduler.recent_cycles] == [(0, 0, 8), (1, 8, 8)]
    events = trainer.sgdr_callback.handler.events
    assert [(e.cycle, e.global_step) for e in events] == [(0, 8), (1, 16)]
    manifest = read_manifest(tmp_path / "snapshots")
    assert [(r.cycle, r.scheduler_step) for r in manifest.snapshots] == [(0, 8), (1, 16)]
    assert manifest.training["scheduler"] == "AdaptiveSGDR"
    for record in manifest.snapshots:
        assert record.eval_metrics is not None and record.eval_metrics["eval_constant"] == 1.0
    logged = {h["step"]: h for h in trainer.state.log_history if "sgdr/cycle" in h}
    assert sorted(logged) == [8, 16]
    assert logged[8]["sgdr/cycle_extended"] == 1.0 and logged[16]["sgdr/cycle_extended"] == 1.0
    assert logged[8]["sgdr/snapshot"].endswith("cycle-000")
