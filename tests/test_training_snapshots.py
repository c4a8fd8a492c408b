"""Snapshots at cycle ends through the real `Trainer` (a small GPT-2 over SST-2 text): where they fall for
several schedules, under gradient accumulation and skipped optimizer steps, with a fitted budget,
what they hold, rotation, and what a failed write leaves behind."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator
from helpers.training import (
    StepRecorder,
    assert_checksums,
    byte_lm_data,
    read_manifest,
    snapshot_weights,
    temporaries,
    tiny_gpt2,
    training_args,
)
from transformers import AutoModelForCausalLM, Trainer

import hf_sgdr.training.snapshot_recorder as snapshot_recorder
from hf_sgdr import SGDRWarning
from hf_sgdr.snapshots import SnapshotEnsemble, evaluate_trainer_snapshots
from hf_sgdr.snapshots.calibration import LM_TEMPERATURE_GRID
from hf_sgdr.training import SGDRCallback, SGDRTrainer, SnapshotWriteError

LR = 1e-3


def _train(tmp_path: Path, max_steps: int, recorder: StepRecorder | None = None, **options: Any) -> SGDRTrainer:
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(tmp_path, max_steps=max_steps, learning_rate=LR, **options.pop("args", {})),
        train_dataset=byte_lm_data(48),
        **options,
    )
    if recorder is not None:
        trainer.add_callback(recorder)
    trainer.train()
    return trainer


@pytest.mark.parametrize(
    ("options", "max_steps", "expected"),
    [
        ({"sgdr_T_0": 4}, 16, [4, 8, 12, 16]),
        ({"sgdr_T_0": 3, "sgdr_T_mult": 2}, 21, [3, 9, 21]),
        ({"sgdr_T_0": 4, "sgdr_T_mult": 1.5}, 19, [4, 10, 19]),
        ({"sgdr_T_0": 4, "args": {"warmup_steps": 3}}, 15, [7, 11, 15]),
    ],
    ids=["T_mult=1", "T_mult=2", "T_mult=1.5", "warmup"],
)
def test_one_snapshot_per_cycle_end_holding_the_weights_of_that_step(
    tmp_path: Path, options: dict[str, Any], max_steps: int, expected: list[int]
) -> None:
    recorder = StepRecorder(weights=True)
    trainer = _train(tmp_path, max_steps, recorder, **options)
    schedule = trainer.lr_scheduler.schedule
    assert schedule.cycle_ends(max_steps) == expected
    snapshot_dir = tmp_path / "snapshots"
    manifest = read_manifest(snapshot_dir)
    assert [r.name for r in manifest.snapshots] == [f"cycle-{i:03d}" for i in range(len(expected))]
    assert [r.scheduler_step for r in manifest.snapshots] == expected
    assert [r.global_step for r in manifest.snapshots] == expected
    assert [e.global_step for e in trainer.sgdr_callback.handler.events] == expected
    assert manifest.schedule == schedule.to_dict()
    assert (manifest.snapshot_type, manifest.auto_class) == ("full_model", "AutoModelForCausalLM")
    assert manifest.training["num_training_steps"] == max_steps
    assert {"hf_sgdr", "torch", "transformers", "accelerate"} <= set(manifest.library_versions)
    for record in manifest.snapshots:
        assert_checksums(snapshot_dir, record)
        # the lr of the cycle's last step (the lowest one), for both param groups
        assert record.lr == pytest.approx([schedule.lr(record.scheduler_step - 1, LR)] * 2, rel=1e-12)
        assert record.lr[0] < schedule.lr(record.scheduler_step, LR)
        assert record.epoch == pytest.approx(record.global_step / 12)  # 48 blocks / batch 4 = 12 steps per epoch
        assert record.train_loss is not None and math.isfinite(record.train_loss)
        assert record.averaged is False and record.num_averaged is None
        saved = snapshot_weights(snapshot_dir / record.name)
        for name, tensor in recorder.weights[record.global_step].items():
            assert torch.equal(saved[name], tensor), name
    last = AutoModelForCausalLM.from_pretrained(snapshot_dir / manifest.snapshots[-1].name)
    for name, tensor in recorder.weights[expected[-1]].items():
        assert torch.equal(last.state_dict()[name], tensor), name


def test_gradient_accumulation_and_T_0_in_epochs_count_optimizer_steps(tmp_path: Path) -> None:
    # 40 blocks / batch 4 = 10 micro-batches per epoch = 5 optimizer steps with accumulation 2;
    # half an epoch is 2.5 -> 3 optimizer steps (round half up). Without accumulation it would be 5.
    recorder = StepRecorder()
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(tmp_path, num_train_epochs=3, gradient_accumulation_steps=2),
        train_dataset=byte_lm_data(40),
        sgdr_T_0_epochs=0.5,
    )
    trainer.add_callback(recorder)
    trainer.train()
    assert trainer.lr_scheduler.schedule.T_0 == 3
    assert recorder.steps == list(range(1, 16)) and recorder.scheduler_steps == recorder.steps
    manifest = read_manifest(tmp_path / "snapshots")
    assert [r.global_step for r in manifest.snapshots] == [3, 6, 9, 12, 15]
    assert manifest.training["gradient_accumulation_steps"] == 2


def test_default_schedule_fits_the_budget_and_ends_on_a_snapshot(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SGDRWarning)  # no "ends mid-cycle" warning
        trainer = _train(tmp_path, 22, sgdr_num_cycles=3, args={"warmup_steps": 2})
    schedule = trainer.lr_scheduler.schedule
    assert (schedule.cycle_limit, schedule.warmup_steps) == (3, 2)
    steps = [r.global_step for r in read_manifest(tmp_path / "snapshots").snapshots]
    assert len(steps) == 3 and steps[-1] == 22 == trainer.state.global_step
    assert [e.restart for e in trainer.sgdr_callback.handler.events] == [True, True, False]


def test_skipped_optimizer_steps_do_not_shift_the_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An fp16 overflow makes the Trainer skip the scheduler step while global_step advances; simulate
    # that at global steps 2 and 3 and check that events follow the scheduler's own counter.
    skipped = {2, 3}
    current: dict[str, int] = {"step": 0}
    monkeypatch.setattr(
        Accelerator, "optimizer_step_was_skipped", property(lambda self: current["step"] + 1 in skipped)
    )

    class Counter(StepRecorder):
        def on_step_end(self, args, state, control, **kwargs):
            super().on_step_end(args, state, control, **kwargs)
            current["step"] = state.global_step

    recorder = Counter()
    trainer = _train(tmp_path, 14, recorder, sgdr_T_0=4)
    assert recorder.scheduler_steps[:5] == [1, 1, 1, 2, 3]
    manifest = read_manifest(tmp_path / "snapshots")
    assert [r.scheduler_step for r in manifest.snapshots] == [4, 8, 12]
    assert [r.global_step for r in manifest.snapshots] == [6, 10, 14]
    assert trainer.lr_scheduler.last_epoch == 12


def test_max_snapshots_keeps_the_newest_and_sweeps_a_crashed_write(tmp_path: Path) -> None:
    snapshot_dir = tmp_path / "snapshots"
    stale = snapshot_dir / ".tmp-cycle-007-4242-0badf00d"  # what a killed writer leaves
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"\x00" * 100)
    trainer = _train(tmp_path, 15, sgdr_T_0=3, max_snapshots=2)
    manifest = read_manifest(snapshot_dir)
    assert [r.name for r in manifest.snapshots] == ["cycle-003", "cycle-004"]
    assert sorted(p.name for p in snapshot_dir.iterdir()) == ["cycle-003", "cycle-004", "manifest.json"]
    assert [e.cycle for e in trainer.sgdr_callback.handler.events] == [0, 1, 2, 3, 4]
    assert manifest.training["max_snapshots"] == 2


def test_a_failed_write_leaves_earlier_snapshots_intact_and_stops_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = snapshot_recorder.save_weights

    def failing_save(model: torch.nn.Module, folder: Path, weights: dict[str, torch.Tensor]) -> None:
        if "cycle-002" in folder.name:
            (folder / "model.safetensors").write_bytes(b"\x00" * 1000)  # half-written, then the disk is full
            raise OSError(28, "No space left on device")
        real_save(model, folder, weights)

    monkeypatch.setattr(snapshot_recorder, "save_weights", failing_save)
    trainer = SGDRTrainer(
        model=tiny_gpt2(), args=training_args(tmp_path, max_steps=20), train_dataset=byte_lm_data(48), sgdr_T_0=3
    )
    with pytest.raises(SnapshotWriteError, match="No space left on device"):
        trainer.train()
    assert trainer.state.global_step == 12  # raised at the next cycle end after the failure (step 9)
    snapshot_dir = tmp_path / "snapshots"
    manifest = read_manifest(snapshot_dir)
    assert [r.name for r in manifest.snapshots] == ["cycle-000", "cycle-001"]
    assert sorted(p.name for p in snapshot_dir.iterdir()) == ["cycle-000", "cycle-001", "manifest.json"]
    assert temporaries(snapshot_dir) == []
    for record in manifest.snapshots:
        assert_checksums(snapshot_dir, record)
        AutoModelForCausalLM.from_pretrained(snapshot_dir / record.name)


def test_callback_on_a_stock_trainer_has_its_scheduler_reset_the_optimizer(tmp_path: Path) -> None:
    """The reset has one owner, the scheduler: the callback's option switches the scheduler's on."""
    recorder = StepRecorder(optimizer_state=True)
    trainer = Trainer(
        model=tiny_gpt2(),
        args=training_args(tmp_path, max_steps=9, lr_scheduler_type="sgdr", lr_scheduler_kwargs={"T_0": 4}),
        train_dataset=byte_lm_data(48),
    )
    callback = SGDRCallback(sgdr_reset_optimizer_state=True, save_snapshots=False).attach(trainer)
    trainer.add_callback(recorder)
    trainer.train()
    assert trainer.lr_scheduler.reset_optimizer_state is True and trainer.lr_scheduler.num_optimizer_resets == 2
    assert callback.handler.num_optimizer_resets == 2
    assert [recorder.optimizer_state[s]["steps"] for s in range(1, 10)] == [[n] for n in (1, 2, 3, 0, 1, 2, 3, 0, 1)]
    assert recorder.optimizer_state[4]["max_exp_avg"] == 0.0 and recorder.optimizer_state[3]["max_exp_avg"] > 0
    assert not (tmp_path / "snapshots").exists()


def test_evaluate_snapshots_of_a_language_model_with_temperatures(tmp_path: Path) -> None:
    """The Trainer path of LM temperature scaling: byte-level GPT-2 snapshots, the Trainer's collation."""
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(tmp_path, max_steps=12, learning_rate=3e-3),
        train_dataset=byte_lm_data(48),
        eval_dataset=byte_lm_data(64)[48:56],
        sgdr_T_0=4,
    )
    trainer.train()
    selection = byte_lm_data(64)[56:64]
    plain = evaluate_trainer_snapshots(trainer, selection_dataset=selection, soups=False)
    report = evaluate_trainer_snapshots(trainer, selection_dataset=selection, soups=False, temperature_scaling=True)
    assert report.kind == "causal_lm" and report.rows[: len(plain.rows)] == plain.rows
    scaled = report.rows_of("temperature_scaled")
    assert [row.name for row in scaled] == [
        *(f"cycle-00{i} (temperature-scaled)" for i in range(3)),
        "ensemble (last 2, average, members temperature-scaled)",
        "ensemble (last 3, average, members temperature-scaled)",
    ]
    assert all(row.temperature in LM_TEMPERATURE_GRID and row.metrics["nll"] > 0 for row in scaled)
    ensemble = SnapshotEnsemble.from_trainer(trainer, snapshots=2)  # the run's folder, from_pretrained's keywords
    assert ensemble.snapshot_names == ["cycle-001", "cycle-002"] and ensemble.source == tmp_path / "snapshots"
    # the method the ensemble side replaces still works, warning once where it is called
    with pytest.warns(FutureWarning, match="evaluate_snapshots is deprecated .*evaluate_trainer_snapshots"):
        old_way = trainer.evaluate_snapshots(selection_dataset=selection, soups=False)
    assert old_way.rows == plain.rows


def test_a_stock_trainer_run_is_evaluated_like_an_sgdr_trainer_run(tmp_path: Path) -> None:
    """The README's second way in: a stock `Trainer` given `SGDRCallback` hands its snapshots to the ensemble side
    the same way `SGDRTrainer` does; a Trainer without the callback is told where snapshots come from."""
    args = training_args(tmp_path, max_steps=8, learning_rate=3e-3, lr_scheduler_type="sgdr")
    args.lr_scheduler_kwargs = {"T_0": 4}
    data = byte_lm_data(64)
    trainer = Trainer(model=tiny_gpt2(), args=args, train_dataset=data[:48], eval_dataset=data[48:56])
    SGDRCallback(snapshot_dir=str(tmp_path / "elsewhere")).attach(trainer)
    trainer.train()
    report = evaluate_trainer_snapshots(trainer, selection_dataset=data[56:64], soups=False)
    assert [row.name for row in report.rows_of("snapshot")] == ["cycle-000", "cycle-001"]
    assert SnapshotEnsemble.from_trainer(trainer).source == tmp_path / "elsewhere"

    plain = Trainer(model=tiny_gpt2(), args=training_args(tmp_path / "plain", max_steps=1), train_dataset=data)
    for call in (SnapshotEnsemble.from_trainer, evaluate_trainer_snapshots):
        with pytest.raises(ValueError, match=r"no SGDRCallback, so it wrote no snapshots.*from_pretrained"):
            call(plain)
