"""End to end on the BERT-family encoder: all-MiniLM-L6-v2 fine-tuned on GLUE SST-2 with `SGDRTrainer`,
the Trainer's fused AdamW reset at the restarts, evaluations attached to the snapshots, the tokenizer
saved beside them, and each snapshot loadable with `AutoModelForSequenceClassification`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.training import (
    MODEL_ID,
    StepRecorder,
    assert_checksums,
    minilm,
    read_manifest,
    sst2,
    tokenizer,
    training_args,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_sgdr.snapshots import evaluate_trainer_snapshots
from hf_sgdr.training import SGDRTrainer


def _accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}


def test_sst2_fine_tuning_snapshots_resets_and_eval_metrics(tmp_path: Path) -> None:
    recorder = StepRecorder(optimizer_state=True)
    trainer = SGDRTrainer(
        model=minilm(),
        args=training_args(tmp_path, max_steps=8, learning_rate=5e-5, eval_strategy="steps", eval_steps=4),
        train_dataset=sst2("train", 40),
        eval_dataset=sst2("validation", 16),
        processing_class=tokenizer(),
        compute_metrics=_accuracy,
        sgdr_T_0=4,
        sgdr_reset_optimizer_state=True,
    )
    trainer.add_callback(recorder)
    trainer.train()

    # The optimizer (the Trainer's default fused AdamW, behind Accelerate) restarts from scratch at the
    # restart steps 4 and 8, and only there: step counts and moments zero right after those steps.
    assert trainer.optimizer.optimizer.defaults.get("fused") is True
    steps = [recorder.optimizer_state[s]["steps"] for s in range(1, 9)]
    assert steps == [[1.0], [2.0], [3.0], [0.0], [1.0], [2.0], [3.0], [0.0]]
    for step in (4, 8):
        assert recorder.optimizer_state[step]["max_exp_avg"] == 0.0
        assert recorder.optimizer_state[step]["max_exp_avg_sq"] == 0.0
        assert recorder.optimizer_state[step - 1]["max_exp_avg"] > 0.0
        assert recorder.optimizer_state[step - 1]["max_exp_avg_sq"] > 0.0
    assert trainer.lr_scheduler.num_optimizer_resets == 2
    events = trainer.sgdr_callback.handler.events
    assert [(e.cycle, e.global_step, e.restart, e.optimizer_reset) for e in events] == [
        (0, 4, True, True),
        (1, 8, True, True),
    ]

    snapshot_dir = tmp_path / "snapshots"
    manifest = read_manifest(snapshot_dir)
    assert manifest.snapshot_type == "full_model"
    assert manifest.auto_class == "AutoModelForSequenceClassification"
    assert (manifest.base_model, manifest.task) == (MODEL_ID, "text-classification")
    assert manifest.training["reset_optimizer_state"] is True
    assert [r.global_step for r in manifest.snapshots] == [4, 8]
    evaluations = {h["step"]: h for h in trainer.state.log_history if "eval_accuracy" in h}
    for record in manifest.snapshots:
        assert_checksums(snapshot_dir, record)
        assert record.eval_metrics is not None
        assert record.eval_metrics["eval_accuracy"] == evaluations[record.global_step]["eval_accuracy"]
        assert record.eval_metrics["eval_loss"] == evaluations[record.global_step]["eval_loss"]
        assert "epoch" not in record.eval_metrics

    # the tokenizer sits once beside the snapshot folders; the last snapshot is the final model
    assert (
        AutoTokenizer.from_pretrained(snapshot_dir)("a fine film")["input_ids"]
        == tokenizer()("a fine film")["input_ids"]
    )
    assert not any((snapshot_dir / r.name / "tokenizer.json").exists() for r in manifest.snapshots)
    loaded = AutoModelForSequenceClassification.from_pretrained(snapshot_dir / "cycle-001").eval()
    batch = tokenizer()(["a gorgeous, witty film", "dull and lifeless"], return_tensors="pt", padding=True)
    trained = trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, trained(**batch).logits)

    # the run's snapshot ensemble, evaluated from the Trainer: each snapshot's accuracy is the one the
    # Trainer measured at its cycle end; the greedy choices are made on a split that is not reported
    report = evaluate_trainer_snapshots(
        trainer,
        selection_dataset=sst2("train", 16),
        selection_metric="nll",
        temperature_scaling=True,
        json_path=tmp_path / "report.json",
    )
    names = [row.name for row in report.rows]
    assert names[:2] == ["cycle-000", "cycle-001"]
    assert {"ensemble (last 2, average)", "uniform soup", "greedy soup", "greedy ensemble selection"} <= set(names)
    assert {"cycle-001 (temperature-scaled)", "ensemble (last 2, average, temperature-scaled)"} <= set(names)
    assert set(report.row("best snapshot (chosen on selection)").selection_metrics) == {"nll"}
    for record in manifest.snapshots:
        assert report.row(record.name).metrics["accuracy"] == pytest.approx(record.eval_metrics["eval_accuracy"])
        # The classification NLL is the Trainer's own eval_loss (mean cross-entropy) of that snapshot.
        assert report.row(record.name).metrics["nll"] == pytest.approx(record.eval_metrics["eval_loss"], rel=1e-4)
    assert (tmp_path / "report.json").is_file() and report.selection_split == "selection"
