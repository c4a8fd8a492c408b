"""Weight averaging inside a cycle (SGDR + SWA): the snapshot holds the mean of the weights over the
last part of the cycle, not the raw weights, and the mean starts again at each restart."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.training import (
    StepRecorder,
    byte_lm_data,
    read_manifest,
    snapshot_weights,
    tiny_gpt2,
    training_args,
)
from transformers import AutoModelForCausalLM, Trainer

import hf_sgdr.training.cycle_end as cycle_end
from hf_sgdr.training import SGDRCallback, SGDRTrainer
from hf_sgdr.training.cycle_end import STATE_NAME


def test_averaged_snapshots_equal_the_hand_computed_mean_of_the_window(tmp_path: Path) -> None:
    recorder = StepRecorder(weights=True)
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(tmp_path, max_steps=12, eval_strategy="steps", eval_steps=6),
        train_dataset=byte_lm_data(48),
        sgdr_T_0=6,
        swa_start=0.5,
        eval_dataset=byte_lm_data(8),  # evaluated at each cycle end
    )
    trainer.add_callback(recorder)
    trainer.train()

    snapshot_dir = tmp_path / "snapshots"
    manifest = read_manifest(snapshot_dir)
    assert manifest.training["swa_start"] == 0.5
    assert [(r.global_step, r.averaged, r.num_averaged) for r in manifest.snapshots] == [(6, True, 4), (12, True, 4)]
    for record, window in zip(manifest.snapshots, ([3, 4, 5, 6], [9, 10, 11, 12]), strict=True):
        # the evaluation at this step measured the raw weights, not the averaged snapshot: not attached
        assert record.eval_metrics is None
        saved = snapshot_weights(snapshot_dir / record.name)
        raw = recorder.weights[record.global_step]
        assert "lm_head.weight" not in raw  # tied to transformer.wte.weight
        for name in raw:
            expected = torch.stack([recorder.weights[step][name] for step in window]).mean(dim=0)
            torch.testing.assert_close(saved[name], expected, rtol=0, atol=1e-6)
        differences = [float((saved[name] - raw[name]).abs().max()) for name in saved]
        assert max(differences) > 1e-4  # the average is not the last step's weights
        loaded = AutoModelForCausalLM.from_pretrained(snapshot_dir / record.name)
        assert torch.equal(loaded.lm_head.weight, loaded.transformer.wte.weight)
        assert torch.equal(loaded.transformer.wte.weight, saved["transformer.wte.weight"])
    assert any("eval_loss" in h for h in trainer.state.log_history)


@pytest.mark.parametrize("trainer_class", ["SGDRTrainer", "Trainer"])
def test_each_checkpoint_gets_the_running_average_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trainer_class: str
) -> None:
    """One route for the checkpoint state: `SGDRTrainer` writes it right before each save, a stock Trainer with
    the callback wherever a save may follow (step end, an evaluation under save_strategy="best", on_save), once."""
    written: list[Path] = []
    real_write = cycle_end.atomic_write_bytes

    def counting_write(path: Path, data: bytes) -> None:
        written.append(path)
        real_write(path, data)

    monkeypatch.setattr(cycle_end, "atomic_write_bytes", counting_write)
    args = training_args(
        tmp_path, max_steps=8, save_strategy="steps", save_steps=4, eval_strategy="steps", eval_steps=4
    )
    data = byte_lm_data(32)
    if trainer_class == "SGDRTrainer":
        trainer = SGDRTrainer(
            model=tiny_gpt2(), args=args, train_dataset=data, eval_dataset=data, sgdr_T_0=4, swa_start=0.5
        )
    else:
        args = training_args(tmp_path, max_steps=8, save_strategy="steps", save_steps=4, eval_strategy="steps",
                             eval_steps=4, lr_scheduler_type="sgdr", lr_scheduler_kwargs={"T_0": 4})  # fmt: skip
        trainer = Trainer(model=tiny_gpt2(), args=args, train_dataset=data, eval_dataset=data)
        SGDRCallback(swa_start=0.5).attach(trainer)
    trainer.train()
    assert written == [tmp_path / f"checkpoint-{step}" / STATE_NAME for step in (4, 8)]
    assert all(path.is_file() for path in written)


def test_a_custom_trainer_saves_the_state_into_the_checkpoint_folder_it_names(tmp_path: Path) -> None:
    """`save_checkpoint_state(folder, step)`: the checkpoint folder itself (as a Trainer subclass calls it)."""
    args = training_args(tmp_path, max_steps=4)
    trainer = SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(8), sgdr_T_0=2, swa_start=0.5)
    trainer.train()
    callback = trainer.sgdr_callback
    folder = callback.checkpoint_folder(tmp_path / "elsewhere", 4)
    assert folder == str(tmp_path / "elsewhere" / "checkpoint-4")
    callback._checkpointed_step = None  # as at a new step: the state is written once per step
    callback.save_checkpoint_state(folder, 4)
    assert (Path(folder) / STATE_NAME).is_file() and not (Path(folder) / "checkpoint-4").exists()
