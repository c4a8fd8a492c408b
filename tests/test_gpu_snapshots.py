"""On CUDA, every snapshot equals the weights after its cycle's last optimizer step, bit for bit, although its copy
to the host runs on a side stream while training goes on: bf16 and fp16 autocast, `torch_compile`, fused AdamW,
gradient accumulation, star restarts and SWA. Each copy is held back on purpose (`torch.cuda._sleep` on the side
stream), so that a copy not ordered before the next in-place write of the weights (the next optimizer step, the star
restore) would read later weights and fail here. Skipped without CUDA; self-contained (no `datasets`, no helpers).

Run on a GPU machine, from the repository root: `python3 -m pytest -q --noconftest tests/test_gpu_snapshots.py` (this
file needs neither the offline Hugging Face cache nor `datasets`), or through `.gpu-bundle/on_device.sh`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from hf_sgdr.snapshot_format.manifest import SnapshotManifest, SnapshotRecord
from hf_sgdr.training import CycleAverager, SGDRTrainer
from hf_sgdr.training.staging import CudaStager

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

VOCAB = 4096
BLOCK = 64
BATCH = 8
T_0 = 4
#: GPU clock cycles the side stream spins before each copy (about 0.25-0.5 s): far longer than a training step.
COPY_DELAY_CYCLES = 500_000_000


@pytest.fixture(autouse=True)
def late_copies(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hold the side stream back before every staged copy, so that training runs ahead of it."""
    stage = CudaStager.stage

    def late_stage(self: CudaStager, *args: Any, **kwargs: Any) -> Any:
        if hasattr(torch.cuda, "_sleep"):
            with torch.cuda.stream(self.stream):
                torch.cuda._sleep(COPY_DELAY_CYCLES)
        return stage(self, *args, **kwargs)

    monkeypatch.setattr(CudaStager, "stage", late_stage)
    yield


class DeviceRecorder(TrainerCallback):
    """Clones of the trainable weights just before and just after every optimizer step, made on the device on the
    current stream (so ordered with the training itself); read only after `torch.cuda.synchronize()`."""

    def __init__(self) -> None:
        self.before: dict[int, dict[str, torch.Tensor]] = {}
        self.after: dict[int, dict[str, torch.Tensor]] = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs) -> None:
        self.before[state.global_step + 1] = _clone(model)

    def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
        self.after[state.global_step] = _clone(model)


def _clone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n.replace("_orig_mod.", ""): p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _model() -> GPT2LMHeadModel:
    set_seed(0)
    config = GPT2Config(
        n_layer=4, n_embd=256, n_head=4, vocab_size=VOCAB, n_positions=BLOCK, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config)


def _data(n: int) -> list[dict[str, torch.Tensor]]:
    ids = torch.randint(0, VOCAB, (n, BLOCK), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": row, "labels": row} for row in ids]


def _train(
    output_dir: Path, *, max_steps: int = 3 * T_0, accumulation: int = 1, **overrides: Any
) -> tuple[SGDRTrainer, DeviceRecorder]:
    trainer_keys = ("restart_from", "swa_start", "optimizer_cls_and_kwargs")
    options = {key: overrides.pop(key) for key in trainer_keys if key in overrides}
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=accumulation,
        learning_rate=1e-3,
        max_steps=max_steps,
        optim="adamw_torch_fused",
        report_to="none",
        save_strategy="no",
        logging_steps=1000,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
        **overrides,
    )
    recorder = DeviceRecorder()
    trainer = SGDRTrainer(
        model=_model(), args=args, train_dataset=_data(BATCH * accumulation * max_steps), sgdr_T_0=T_0, **options
    )
    trainer.add_callback(recorder)
    trainer.train()
    torch.cuda.synchronize()
    return trainer, recorder


def _saved(snapshot_dir: Path, record: SnapshotRecord) -> dict[str, torch.Tensor]:
    (path,) = (snapshot_dir / record.name).glob("*.safetensors")
    return load_file(str(path))


def _assert_snapshots_are_the_recorded_weights(
    output_dir: Path, trainer: SGDRTrainer, recorder: DeviceRecorder, staged: bool = True
) -> list[SnapshotRecord]:
    """Each snapshot holds, bit for bit, the trainable weights after the optimizer step at which it was taken;
    the copy went through the side stream (unless not `staged`), and the training thread reported its share."""
    handler = trainer.sgdr_callback.handler
    assert handler is not None and (handler.stager is not None) is staged  # the CUDA path was taken, or not
    snapshot_dir = output_dir / "snapshots"
    records = SnapshotManifest.load(snapshot_dir).snapshots
    assert records
    for record in records:
        saved = _saved(snapshot_dir, record)
        expected = recorder.after[record.global_step]
        assert set(expected) <= set(saved)
        for name, tensor in expected.items():
            assert torch.equal(saved[name], tensor.cpu()), (record.name, name)
    events = [event for event in handler.events if event.snapshot is not None]
    assert [event.global_step for event in events] == [record.global_step for record in records]
    assert all(event.snapshot_stall_s is not None for event in events)
    logged = {h["step"] for h in trainer.state.log_history if "sgdr/snapshot_stall_ms" in h}
    assert logged == {record.global_step for record in records}
    return records


def test_bf16_fused_adamw_snapshots_are_the_weights_after_each_cycle_s_last_step(tmp_path: Path) -> None:
    trainer, recorder = _train(tmp_path, bf16=True)
    records = _assert_snapshots_are_the_recorded_weights(tmp_path, trainer, recorder)
    assert [record.global_step for record in records] == [T_0, 2 * T_0, 3 * T_0]
    # The next optimizer step did change the weights: a copy that read them late would have been caught above.
    for record in records[:-1]:
        first = recorder.after[record.global_step]
        after_next = recorder.after[record.global_step + 1]
        assert any(not torch.equal(first[name], after_next[name]) for name in first)
    # The training thread only launched the first copy (buffers pinned ahead), it did not wait for it.
    if hasattr(torch.cuda, "_sleep"):
        assert trainer.sgdr_callback.handler.events[0].snapshot_stall_s < 0.1
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "snapshots" / records[-1].name)
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()  # tied weights stay tied
    assert torch.equal(loaded.transformer.wte.weight, recorder.after[3 * T_0]["transformer.wte.weight"].cpu())


def test_every_snapshot_is_copied_into_the_pinned_buffers_allocated_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The buffers carved out of pinned chunks count as pinned (`is_pinned` of a pointer inside a chunk), so each
    snapshot's copy reuses them instead of pinning fresh memory on the training thread."""
    allocated: list[dict[str, torch.Tensor]] = []
    staged: list[Any] = []
    real_allocate, real_stage = CudaStager.allocate, CudaStager.stage

    def allocate(self: CudaStager, state: Any) -> dict[str, torch.Tensor]:
        allocated.append(real_allocate(self, state))
        return allocated[-1]

    def stage(self: CudaStager, *args: Any, **kwargs: Any) -> Any:
        staged.append(real_stage(self, *args, **kwargs))
        return staged[-1]

    monkeypatch.setattr(CudaStager, "allocate", allocate)
    monkeypatch.setattr(CudaStager, "stage", stage)
    trainer, recorder = _train(tmp_path, bf16=True)
    _assert_snapshots_are_the_recorded_weights(tmp_path, trainer, recorder)
    (buffers,) = allocated
    assert all(buffer.is_pinned() for buffer in buffers.values())
    assert len(staged) == 3 and all(copy.tensors[name] is buffers[name] for copy in staged for name in buffers)


def test_fp16_torch_compile_and_gradient_accumulation_snapshots_are_exact(tmp_path: Path) -> None:
    # fp16 may skip its first steps (overflow): the scheduler does not step then, and the snapshots come later.
    trainer, recorder = _train(tmp_path, max_steps=4 * T_0, accumulation=2, fp16=True, torch_compile=True)
    records = _assert_snapshots_are_the_recorded_weights(tmp_path, trainer, recorder)
    assert len(records) >= 2


@pytest.mark.parametrize("torch_compile", [False, True])
def test_star_restarts_restore_the_first_cycle_s_weights_after_its_copy(tmp_path: Path, torch_compile: bool) -> None:
    """Also compiled: the restore runs in a forward pre-hook, which dynamo must leave to eager code."""
    trainer, recorder = _train(tmp_path, bf16=True, restart_from="first", torch_compile=torch_compile)
    records = _assert_snapshots_are_the_recorded_weights(tmp_path, trainer, recorder)
    assert [record.global_step for record in records] == [T_0, 2 * T_0, 3 * T_0]
    first = {name: tensor.cpu() for name, tensor in recorder.after[T_0].items()}
    anchor = trainer.sgdr_callback.handler.state_dict()["anchor"]
    assert anchor.keys() == first.keys() and all(torch.equal(anchor[n], first[n]) for n in first)
    for record in records[:-1]:
        # The first optimizer step of the next cycle started from the first cycle's end (restored at its forward).
        before_step = recorder.before[record.global_step + 1]
        assert all(torch.equal(before_step[name].cpu(), tensor) for name, tensor in first.items()), record.name


class _OwnStepAdamW(torch.optim.AdamW):
    """An optimizer whose `step` is not torch's: it might write the weights outside it, so no background copy."""

    def step(self, closure: Any = None) -> Any:
        return super().step(closure)


def test_an_optimizer_of_unknown_writes_gets_the_blocking_copy_and_exact_snapshots(tmp_path: Path) -> None:
    trainer, recorder = _train(tmp_path, bf16=True, optimizer_cls_and_kwargs=(_OwnStepAdamW, {"lr": 1e-3}))
    records = _assert_snapshots_are_the_recorded_weights(tmp_path, trainer, recorder, staged=False)
    assert [record.global_step for record in records] == [T_0, 2 * T_0, 3 * T_0]


def test_swa_snapshots_are_the_average_of_the_recorded_weights(tmp_path: Path) -> None:
    trainer, recorder = _train(tmp_path, bf16=True, swa_start=0.5)
    snapshot_dir = tmp_path / "snapshots"
    records = SnapshotManifest.load(snapshot_dir).snapshots
    assert trainer.sgdr_callback.handler.stager is not None
    first_step = CycleAverager(0.5).first_step(T_0)
    assert [(r.global_step, r.averaged, r.num_averaged) for r in records] == [
        (end, True, T_0 - first_step + 1) for end in (T_0, 2 * T_0, 3 * T_0)
    ]
    for record in records:
        # The same running mean, in the same float32 operations on the same device, from the recorded weights.
        window = range(record.global_step - T_0 + first_step, record.global_step + 1)
        average: dict[str, torch.Tensor] = {}
        for count, step in enumerate(window, start=1):
            for name, tensor in recorder.after[step].items():
                if name not in average:
                    average[name] = tensor.to(torch.float32, copy=True)
                else:
                    average[name].lerp_(tensor.to(torch.float32), 1.0 / count)
        saved = _saved(snapshot_dir, record)
        for name, tensor in average.items():
            assert torch.equal(saved[name], tensor.to(saved[name].dtype).cpu()), (record.name, name)
        raw = recorder.after[record.global_step]
        assert any(not torch.equal(saved[name], raw[name].cpu()) for name in raw)  # not the last step's weights
