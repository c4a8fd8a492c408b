"""`restart_from="first"` (star restarts): at every restart after the first cycle the trainable weights go
back to the first cycle's end with a fresh optimizer state, through `SGDRTrainer`, a plain Accelerate loop
and LoRA; a resumed run equals an uninterrupted one; a run that cannot restart from the first cycle says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from helpers.training import (
    StepRecorder,
    byte_lm_data,
    read_manifest,
    snapshot_weights,
    tiny_gpt2,
    training_args,
)
from peft import LoraConfig, TaskType, get_peft_model
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, default_data_collator

from hf_sgdr import SGDRScheduler
from hf_sgdr.training import SGDRAccelerateHelper, SGDRCallback, SGDRTrainer

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


class ForwardRecorder:
    """The trainable weights seen by each training-mode forward (a forward hook runs after the pre-hooks)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []
        model.register_forward_hook(self._record)

    def _record(self, module: torch.nn.Module, args: object, output: object) -> None:
        if module.training:
            self.weights.append({n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad})


def test_trainer_star_restarts_go_back_to_the_first_cycle_with_a_fresh_optimizer(tmp_path: Path) -> None:
    recorder = StepRecorder(weights=True, optimizer_state=True)
    trainer = _trainer(tmp_path / "star", "first")
    forwards = ForwardRecorder(trainer.model)
    trainer.add_callback(recorder)
    trainer.train()
    assert len(forwards.weights) == 10  # one micro-batch per optimizer step
    snapshots = tmp_path / "star" / "snapshots"
    manifest = read_manifest(snapshots)
    assert [r.global_step for r in manifest.snapshots] == [4, 6, 8, 10]
    assert manifest.training["restart_from"] == "first" and manifest.training["reset_optimizer_state"] is True
    first = _named(snapshot_weights(snapshots / "cycle-000"))
    for step, record in zip((4, 6, 8), manifest.snapshots[:3], strict=True):
        taken = _named(snapshot_weights(snapshots / record.name))
        # At the cycle end (where an evaluation or a checkpoint would look) the weights are the cycle's own...
        assert all(torch.equal(recorder.weights[step][n], taken[n]) for n in taken)
        # ...and the next training forward starts from the first cycle's end, with a fresh optimizer state.
        next_forward = forwards.weights[step]  # forward of optimizer step step + 1
        for name, tensor in first.items():
            assert torch.equal(next_forward[name], tensor), (step, name)
        assert recorder.optimizer_state[step]["steps"] == [0.0]
        assert recorder.optimizer_state[step]["max_exp_avg"] == 0.0
        assert record.global_step == 4 or any(not torch.equal(taken[n], first[n]) for n in first)  # cycles explore
    events = [e for e in trainer.state.log_history if "sgdr/weights_restored" in e]
    assert [e["sgdr/weights_restored"] for e in events] == [0.0, 1.0, 1.0, 0.0]

    # The classic restart continues from the previous cycle's end instead.
    trainer = _trainer(tmp_path / "last", "last")
    classic = ForwardRecorder(trainer.model)
    trainer.train()
    second = _named(snapshot_weights(tmp_path / "last" / "snapshots" / "cycle-001"))
    assert all(torch.equal(classic.weights[6][n], second[n]) for n in second)


def _as_if_on_two_gpus(trainer: Trainer) -> Trainer:
    """What the Trainer computes on a machine with 2 GPUs run as one process (a stand-in: none here): it then wraps
    the model in `nn.DataParallel`, which on a CPU calls the model itself."""
    trainer.args._n_gpu = 2
    return trainer


def test_under_data_parallel_the_restore_runs_before_the_wrapper_copies_the_weights(tmp_path: Path) -> None:
    """`nn.DataParallel` broadcasts the weights to its replicas at each forward: the restore hook sits on the
    wrapper (so it runs first), and the run restarts from the first cycle like an unwrapped one."""
    places = []

    class HookPlaces(TrainerCallback):
        def on_step_begin(self, args: object, state: object, control: object, **kwargs: object) -> None:
            wrapped, inner = trainer.model_wrapped, trainer.model
            places.append((type(wrapped).__name__, len(wrapped._forward_pre_hooks), len(inner._forward_pre_hooks)))

    trainer = _as_if_on_two_gpus(_trainer(tmp_path / "dp", "first", per_device_train_batch_size=2))
    trainer.add_callback(HookPlaces())
    forwards = ForwardRecorder(trainer.model)
    trainer.train()
    assert set(places) == {("DataParallel", 1, 0)}
    first = _named(snapshot_weights(tmp_path / "dp" / "snapshots" / "cycle-000"))
    for step in (4, 6, 8):  # the forward after each restart starts from the first cycle's end
        assert all(torch.equal(forwards.weights[step][name], tensor) for name, tensor in first.items()), step

    stock_args = training_args(tmp_path / "stock", max_steps=10, lr_scheduler_type="sgdr")
    stock_args.lr_scheduler_kwargs = {"cycles": CYCLES}
    stock = Trainer(
        model=tiny_gpt2(),
        args=stock_args,
        train_dataset=byte_lm_data(48),
        callbacks=[SGDRCallback(restart_from="first")],
    )
    with pytest.raises(ValueError, match=r"restart_from='first' on 2 GPUs in one process .*\.attach\(trainer\)"):
        _as_if_on_two_gpus(stock).train()
    assert stock.state.global_step == 0 and not (tmp_path / "stock" / "snapshots").exists()  # refused before training


def test_a_resumed_star_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    _trainer(tmp_path / "whole", "first").train()
    saving = _trainer(tmp_path / "parts", "first", save_strategy="steps", save_steps=3)
    saving.train()
    checkpoint = tmp_path / "parts" / "checkpoint-6"  # at a restart: the weights go back after the resume
    assert torch.load(checkpoint / "sgdr_state.pt", weights_only=True)["restore_pending"] is True
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
    trainer = _trainer(tmp_path, "first", model=model)
    forwards = ForwardRecorder(model.get_base_model())
    trainer.train()
    anchor = trainer.sgdr_callback.handler.state_dict()["anchor"]
    assert anchor and all("lora_" in name for name in anchor)  # only the adapter is kept
    base_names = {n.removeprefix("base_model.model."): n for n in anchor}
    assert all(torch.equal(forwards.weights[6][short], anchor[full]) for short, full in base_names.items())
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
    events, restored, at_end, pending, weights_seen = [], {}, {}, None, {}

    def seen(module: torch.nn.Module, args: object, output: object) -> None:
        nonlocal weights_seen
        if module.training:
            weights_seen = {n: p.detach().clone() for n, p in module.named_parameters()}

    model.register_forward_hook(seen)
    for batch in loader:
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        event = sgdr.step(loss=loss)
        if pending is not None:  # the forward of this step ran from the weights the restart left
            restored[pending] = weights_seen
            pending = None
        if event is not None:
            events.append(event)
            model.eval()  # an evaluation at the cycle end sees the cycle's own weights
            with torch.no_grad():
                model(**batch)
            at_end[event.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}
            model.train()
            pending = event.global_step
        if sgdr.global_step == stop_after:
            accelerator.save_state(tmp_path / "state")
            break
    sgdr.end()
    return events, restored, at_end


def test_accelerate_helper_star_restarts_and_carries_the_anchor_in_save_state(tmp_path: Path) -> None:
    events, restored, at_end = _accelerate_run(tmp_path)
    assert [(e.global_step, e.restart, e.optimizer_reset, e.weights_restored) for e in events] == [
        (4, True, True, False),
        (6, True, True, True),
        (8, True, True, True),
        (10, False, False, False),
    ]
    first = _named(snapshot_weights(tmp_path / "snapshots" / "cycle-000"))
    for step, name in ((6, "cycle-001"), (8, "cycle-002")):
        own = _named(snapshot_weights(tmp_path / "snapshots" / name))
        assert all(torch.equal(at_end[step][n], own[n]) for n in own)
        assert all(torch.equal(restored[step][n], first[n]) for n in first)
    _accelerate_run(tmp_path / "saved", stop_after=5)
    state = torch.load(tmp_path / "saved" / "state" / "custom_checkpoint_1.pkl", weights_only=True)
    assert set(state["handler"]["anchor"]) == set(first)
    assert all(torch.equal(state["handler"]["anchor"][n], first[n]) for n in first)
