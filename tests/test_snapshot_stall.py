"""What a snapshot costs the training thread, on the CPU: the host copy is reused from one snapshot to the next,
a write slower than a cycle makes the next snapshot wait (logged, and measured in `sgdr/snapshot_stall_ms`), and
the snapshots stay exact. The CUDA path (pinned buffers, side stream) is checked in test_gpu_snapshots.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import torch
from helpers.training import StepRecorder, byte_lm_data, read_manifest, snapshot_weights, tiny_accelerate_run, tiny_gpt2
from helpers.training import training_args as make_args

import hf_sgdr.training.snapshot_recorder as snapshot_recorder
from hf_sgdr.training import SGDRTrainer

WRITE_DELAY_S = 1.5  # far longer than a cycle of 2 tiny steps, even on a loaded machine


def test_a_slow_writer_makes_the_next_snapshot_wait_and_the_host_copy_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handed_over: list[dict[str, int]] = []
    real_save = snapshot_recorder.save_weights

    def slow_save(model: torch.nn.Module, folder: Path, weights: dict[str, torch.Tensor]) -> None:
        handed_over.append({name: tensor.untyped_storage().data_ptr() for name, tensor in weights.items()})
        time.sleep(WRITE_DELAY_S)  # a slow disk: the next cycle (2 steps) ends before this write does
        real_save(model, folder, weights)

    monkeypatch.setattr(snapshot_recorder, "save_weights", slow_save)
    recorder = StepRecorder(weights=True)
    trainer = SGDRTrainer(
        model=tiny_gpt2(), args=make_args(tmp_path, max_steps=6), train_dataset=byte_lm_data(24), sgdr_T_0=2
    )
    trainer.add_callback(recorder)
    with caplog.at_level(logging.INFO, logger="hf_sgdr.training"):  # the recorder and the cycle end
        trainer.train()

    # One host copy for the whole run: every snapshot was written from the same memory (tied weights share it).
    assert len(handed_over) == 3 and handed_over[0] == handed_over[1] == handed_over[2]
    assert handed_over[0]["lm_head.weight"] == handed_over[0]["transformer.wte.weight"]
    # ...and yet each snapshot holds its own cycle's weights: reused only once the previous write finished.
    snapshot_dir = tmp_path / "snapshots"
    records = read_manifest(snapshot_dir).snapshots
    assert [r.global_step for r in records] == [2, 4, 6]
    for record in records:
        saved = snapshot_weights(snapshot_dir / record.name)
        expected = recorder.weights[record.global_step]
        assert set(expected) <= set(saved)
        assert all(torch.equal(saved[name], tensor) for name, tensor in expected.items()), record.name
    assert not torch.equal(
        snapshot_weights(snapshot_dir / "cycle-000")["transformer.wte.weight"],
        snapshot_weights(snapshot_dir / "cycle-002")["transformer.wte.weight"],
    )

    # The training thread waited for the previous write at the 2nd and 3rd snapshot, said so, and reports it.
    events = trainer.sgdr_callback.handler.events
    stalls = [event.snapshot_stall_s for event in events]
    assert stalls[0] is not None and stalls[0] < WRITE_DELAY_S / 2
    assert all(stall is not None and stall > WRITE_DELAY_S / 3 for stall in stalls[1:]), stalls
    # (cycle-000 may wait for the writer's set-up of the folder on a busy machine: not a previous write.)
    waits = [r.getMessage() for r in caplog.records if "waited" in r.getMessage() and "cycle-000" not in r.getMessage()]
    assert len(waits) == 2 and "cycle-001" in waits[0] and "cycle-002" in waits[1]
    assert all("previous snapshot's write" in message for message in waits)
    logged = {
        h["step"]: h["sgdr/snapshot_stall_ms"] for h in trainer.state.log_history if "sgdr/snapshot_stall_ms" in h
    }
    assert logged == {event.global_step: event.snapshot_stall_s * 1e3 for event in events}
    assert any("training thread" in r.getMessage() and "cycle-002" in r.getMessage() for r in caplog.records)


def test_without_snapshots_there_is_no_stall_to_report(tmp_path: Path) -> None:
    events = tiny_accelerate_run(tmp_path, save_snapshots=False).events
    assert len(events) == 2 and all(event.snapshot_stall_s is None for event in events)
    assert all("sgdr/snapshot_stall_ms" not in event.as_logs() for event in events)
    with_snapshots = tiny_accelerate_run(tmp_path / "with").events
    assert all(event.snapshot_stall_s is not None and event.snapshot_stall_s >= 0 for event in with_snapshots)
    assert all(event.as_logs()["sgdr/snapshot_stall_ms"] == event.snapshot_stall_s * 1e3 for event in with_snapshots)


def test_on_the_cpu_no_stager_is_made() -> None:
    from hf_sgdr.training.staging import CudaStager

    model = tiny_gpt2()
    assert CudaStager.for_model(model, torch.optim.AdamW(model.parameters())) is None


class _OwnInit(torch.optim.AdamW):
    """A subclass that keeps torch's `step`: only that step writes the weights."""

    def __init__(self, params: object) -> None:
        super().__init__(params, lr=1e-3)


class _OwnStep(torch.optim.SGD):
    """A subclass with its own `step`: it may write the weights anywhere."""

    def step(self, closure: object = None) -> None:
        return super().step(closure)


class _ScheduleFreeLike(torch.optim.SGD):
    """Schedule-free optimizers swap the weights in `eval()` / `train()`, around every evaluation."""

    def eval(self) -> None: ...


def test_only_optimizers_that_write_the_weights_in_step_get_the_background_copy() -> None:
    """The side-stream copy is fenced before `optimizer.step()`; an optimizer that writes the weights elsewhere
    (during backward like GaLore's layer-wise dummy and LOMO, or around evaluation like schedule-free) would race
    a copy in flight, so its snapshots are copied blocking."""
    from accelerate import Accelerator
    from transformers.optimization import Adafactor
    from transformers.trainer_pt_utils import LayerWiseDummyOptimizer

    from hf_sgdr.training.staging import writes_weights_only_in_step

    params = list(tiny_gpt2().parameters())
    # The subclass first: torch wraps `step` into the first instantiated class of its kind, here `_OwnInit`.
    step_only = [_OwnInit(params), torch.optim.AdamW(params), torch.optim.SGD(params, lr=0.1)]
    step_only += [Adafactor(params, lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False)]
    step_only.append(Accelerator(cpu=True).prepare_optimizer(torch.optim.AdamW(params)))
    assert all(writes_weights_only_in_step(optimizer) for optimizer in step_only)
    elsewhere = [LayerWiseDummyOptimizer(lr=1e-3), _OwnStep(params, lr=0.1), _ScheduleFreeLike(params, lr=0.1)]
    elsewhere.append(object())  # not a torch optimizer: no step pre-hook to fence the copy
    assert not any(writes_weights_only_in_step(optimizer) for optimizer in elsewhere)
