"""`restart_from="first"` (star restarts): at every restart after the first cycle the trainable weights go
back to the first cycle's end with a fresh optimizer state, through `SGDRTrainer`, a plain Accelerate loop
and LoRA; a resumed run equals an uninterrupted one; a run that cannot restart from the first cycle says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from peft import LoraConfig, TaskType, get_peft_model
from test_training_support import (
    StepRecorder,
    byte_lm_data,
    one_thread,  # noqa: F401 (a fixture, used through pytestmark)
    read_manifest,
    snapshot_weights,
    tiny_gpt2,
    training_args,
)
from torch.utils.data import DataLoader
from transformers import default_data_collator

from hf_sgdr import SGDRScheduler
from hf_sgdr.training import SGDRAccelerateHelper, SGDRTrainer

pytestmark = pytest.mark.usefixtures("one_thread")
CYCLES = "0.4:1,0.2:0.5,0.2:0.5,0.2:0.5"  # 10 steps: 4, 2, 2, 2


def _trainer(output_dir: Path, restart_from: str, model: torch.nn.Module | None = None, **args: object) -> SGDRTrainer:
    return SGDRTrainer(
        model=model if model is not None else tiny_gpt2(),
        args=training_args(output_dir, max_steps=10, **args),
        train_dataset=byte_lm_data(48),
        sgdr_cycles=CYCLES,
        restart_from=restart_from,
    )


def _named(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Snapshot weights under the model's parameter names (the tied lm_head is stored once)."""
    return {k: v for k, v in weights.items() if k != "lm_head.weight"}


def test_trainer_star_restarts_go_back_to_the_first_cycle_with_a_fresh_optimizer(tmp_path: Path) -> None:
    recorder = StepRecorder(weights=True, optimizer_state=True)
    trainer = _trainer(tmp_path / "star", "first")
    trainer.add_callback(recorder)
    trainer.train()
    snapshots = tmp_path / "star" / "snapshots"
    manifest = read_manifest(snapshots)
    assert [r.global_step for r in manifest.snapshots] == [4, 6, 8, 10]
    assert manifest.training["restart_from"] == "first" and manifest.training["reset_optimizer_state"] is True
    first = _named(snapshot_weights(snapshots / "cycle-000"))
    for step, record in zip((4, 6, 8), manifest.snapshots[:3], strict=True):
        after_restart = recorder.weights[step]
        for name, tensor in first.items():
            assert torch.equal(after_restart[name], tensor), (step, name)  # back to the first cycle's end
        assert recorder.optimizer_state[step]["steps"] == [0.0]  # fresh optimizer state
        assert recorder.optimizer_state[step]["max_exp_avg"] == 0.0
        taken = _named(snapshot_weights(snapshots / record.name))
        assert record.global_step == 4 or any(not torch.equal(taken[n], first[n]) for n in first)  # cycles explore
    events = [e for e in trainer.state.log_history if "sgdr/weights_restored" in e]
    assert [e["sgdr/weights_restored"] for e in events] == [0.0, 1.0, 1.0, 0.0]

    # The classic restart continues from the previous cycle's end instead.
    classic = StepRecorder(weights=True)
    trainer = _trainer(tmp_path / "last", "last")
    trainer.add_callback(classic)
    trainer.train()
    second = _named(snapshot_weights(tmp_path / "last" / "snapshots" / "cycle-001"))
    assert all(torch.equal(classic.weights[6][n], second[n]) for n in second)


def test_a_resumed_star_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    _trainer(tmp_path / "whole", "first").train()
    saving = _trainer(tmp_path / "parts", "first", save_strategy="steps", save_steps=5)
    saving.train()
    checkpoint = tmp_path / "parts" / "checkpoint-5"
    assert (checkpoint / "sgdr_state.pt").is_file()
    resumed = _trainer(tmp_path / "parts", "first")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    whole, parts = (read_manifest(tmp_path / name / "snapshots") for name in ("whole", "parts"))
    assert [r.global_step for r in parts.snapshots] == [4, 6, 8, 10]
    for record in whole.snapshots:
        expected = snapshot_weights(tmp_path / "whole" / "snapshots" / record.name)
        got = snapshot_weights(tmp_path / "parts" / "snapshots" / record.name)
        for name, tensor in expected.items():
            torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-6)

    # Without the checkpoint's first-cycle weights the run cannot restart from them: refused before training on.
    (checkpoint / "sgdr_state.pt").unlink()
    with pytest.raises(ValueError, match=r"holds no first-cycle weights|needs the first cycle.s weights"):
        _trainer(tmp_path / "parts", "first").train(resume_from_checkpoint=str(checkpoint))


def test_lora_star_restarts_move_only_the_adapter(tmp_path: Path) -> None:
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=2, lora_alpha=4, target_modules=["c_attn"])
    model = get_peft_model(tiny_gpt2(), config)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    recorder = StepRecorder(weights=True)
    trainer = _trainer(tmp_path, "first", model=model)
    trainer.add_callback(recorder)
    trainer.train()
    anchor = trainer.sgdr_callback.handler.state_dict()["anchor"]
    assert anchor and all("lora_" in name for name in anchor)  # only the adapter is kept
    assert all(torch.equal(recorder.weights[6][n], anchor[n]) for n in anchor)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)


def _accelerate_run(tmp_path: Path, stop_after: int | None = None) -> tuple[list, dict]:
    set_seed(0)
    accelerator = Accelerator(cpu=True)
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(byte_lm_data(40), batch_size=4, shuffle=True, collate_fn=default_data_collator)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = SGDRScheduler(optimizer, cycles=CYCLES, num_training_steps=10)
    sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=tmp_path, restart_from="first")
    events, restored = [], {}
    for batch in loader:
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        event = sgdr.step(loss=loss)
        if event is not None:
            events.append(event)
            restored[event.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}
        if sgdr.global_step == stop_after:
            accelerator.save_state(tmp_path / "state")
            break
    sgdr.end()
    return events, restored


def test_accelerate_helper_star_restarts_and_carries_the_anchor_in_save_state(tmp_path: Path) -> None:
    events, restored = _accelerate_run(tmp_path)
    assert [(e.global_step, e.restart, e.optimizer_reset, e.weights_restored) for e in events] == [
        (4, True, True, False),
        (6, True, True, True),
        (8, True, True, True),
        (10, False, False, False),
    ]
    first = _named(snapshot_weights(tmp_path / "snapshots" / "cycle-000"))
    for step in (6, 8):
        assert all(torch.equal(restored[step][n], first[n]) for n in first)
    _accelerate_run(tmp_path / "saved", stop_after=5)
    state = torch.load(tmp_path / "saved" / "state" / "custom_checkpoint_1.pkl", weights_only=True)
    assert set(state["handler"]["anchor"]) == set(first)
    assert all(torch.equal(state["handler"]["anchor"][n], first[n]) for n in first)
