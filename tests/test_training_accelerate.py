"""`SGDRAccelerateHelper` in a plain Accelerate loop (one process): the scheduler steps once per
optimizer step under gradient accumulation, never on a skipped step, the same snapshots as the
Trainer path come out, and `save_state` / `load_state` carry the helper."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from helpers.training import (
    assert_checksums,
    byte_lm_data,
    read_manifest,
    tiny_gpt2,
)
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, default_data_collator

from hf_sgdr import SGDRScheduler
from hf_sgdr.snapshots import TRAIN_DATA_KEY, TrainData
from hf_sgdr.training import ResumeMismatchError, SGDRAccelerateHelper


def _setup(accumulation: int = 2):
    set_seed(0)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(byte_lm_data(48), batch_size=4, shuffle=True, collate_fn=default_data_collator)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    return accelerator, model, optimizer, loader


def _epoch(accelerator, model, optimizer, loader, sgdr, stop_after: int | None = None) -> list:
    events = []
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        event = sgdr.step(loss=loss)
        if event is not None:
            events.append(event)
        if sgdr.global_step == stop_after and accelerator.sync_gradients:
            break
    return events


def test_helper_steps_once_per_optimizer_step_and_writes_snapshots(tmp_path: Path) -> None:
    accelerator, model, optimizer, loader = _setup()
    scheduler = SGDRScheduler(optimizer, T_0=3, reset_optimizer_state=True)
    sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=tmp_path, max_snapshots=3, swa_start=0.5)
    events = _epoch(accelerator, model, optimizer, loader, sgdr)  # 12 micro-batches, accumulation 2
    sgdr.end()
    assert (sgdr.global_step, scheduler.last_epoch) == (6, 6)
    assert [(e.cycle, e.global_step, e.optimizer_reset, e.num_averaged) for e in events] == [
        (0, 3, True, 2),
        (1, 6, True, 2),
    ]
    manifest = read_manifest(tmp_path / "snapshots")
    assert manifest.training["loop"] == "accelerate"
    assert manifest.training["gradient_accumulation_steps"] == 2
    assert [r.scheduler_step for r in manifest.snapshots] == [3, 6]
    for record in manifest.snapshots:
        assert_checksums(tmp_path / "snapshots", record)
        assert record.averaged and record.train_loss is not None and record.train_loss > 0
        AutoModelForCausalLM.from_pretrained(tmp_path / "snapshots" / record.name)
    with pytest.raises(ValueError, match="unprepared"):
        SGDRAccelerateHelper(
            accelerator, model, accelerator.prepare(SGDRScheduler(optimizer, T_0=3)), output_dir=tmp_path
        )
    with pytest.raises(ValueError, match="sgdr_T_0"):
        SGDRAccelerateHelper(
            accelerator, model, scheduler, output_dir=tmp_path, sgdr_T_0=3, register_for_checkpointing=False
        )


def test_skipped_optimizer_steps_do_not_step_the_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    accelerator, model, optimizer, loader = _setup(accumulation=1)
    scheduler = SGDRScheduler(optimizer, T_0=4)
    sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, save_snapshots=False)
    skipped = {2, 3}  # optimizer steps lost to an fp16 overflow
    monkeypatch.setattr(
        Accelerator, "optimizer_step_was_skipped", property(lambda self: sgdr.global_step + 1 in skipped)
    )
    events = _epoch(accelerator, model, optimizer, loader, sgdr)
    assert (sgdr.global_step, scheduler.last_epoch) == (12, 10)
    assert [(e.global_step, e.scheduler_step) for e in events] == [(6, 4), (10, 8)]


def test_save_state_and_load_state_carry_the_helper(tmp_path: Path) -> None:
    accelerator, model, optimizer, loader = _setup()
    scheduler = SGDRScheduler(optimizer, T_0=4)
    sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=tmp_path, swa_start=0.25)
    _epoch(accelerator, model, optimizer, loader, sgdr, stop_after=5)
    accelerator.save_state(tmp_path / "state")  # waits for the snapshot of step 4 first
    assert [r.global_step for r in read_manifest(tmp_path / "snapshots").snapshots] == [4]
    average = {k: v.clone() for k, v in sgdr.handler.averager.averages.items()}
    sgdr.end()

    accelerator, model, optimizer, loader = _setup()
    scheduler = SGDRScheduler(optimizer, T_0=4)
    resumed = SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=tmp_path, swa_start=0.25)
    accelerator.load_state(tmp_path / "state")
    assert (resumed.global_step, scheduler.last_epoch) == (5, 5)
    state = resumed.state_dict()["handler"]
    assert state["scheduler_step"] == 5 and state["averager"]["count"] == 1
    for name, tensor in state["averager"]["averages"].items():
        assert torch.equal(tensor, average[name])
    events = _epoch(accelerator, model, optimizer, loader, resumed)
    resumed.end()
    # cycle 1 (steps 5-8) averages from its first step: step 5 from before the save, 6-8 after it
    assert [(e.cycle, e.global_step, e.num_averaged) for e in events] == [(1, 8, 4)]
    assert [r.global_step for r in read_manifest(tmp_path / "snapshots").snapshots] == [4, 8]


def test_a_resume_that_holds_out_other_training_data_is_refused(tmp_path: Path) -> None:
    """The snapshots listed were trained without the held-out rows the manifest records: a resumed run recording
    other rows (another seed or share) or none is refused when its checkpoint is loaded, naming the seeds, before it
    trains or writes; the same record resumes."""
    recorded = TrainData("train", 48, (1, 5, 9)).to_dict()
    first = {TRAIN_DATA_KEY: recorded, "seed": 3}

    def helper(training_info: dict) -> tuple:
        accelerator, model, optimizer, loader = _setup()
        scheduler = SGDRScheduler(optimizer, T_0=4)
        sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=tmp_path, training_info=training_info)
        return accelerator, model, optimizer, loader, sgdr

    accelerator, model, optimizer, loader, sgdr = helper(first)
    _epoch(accelerator, model, optimizer, loader, sgdr, stop_after=5)
    accelerator.save_state(tmp_path / "state")
    sgdr.end()
    manifest_bytes = (tmp_path / "snapshots" / "manifest.json").read_bytes()

    other = TrainData("train", 48, (1, 5, 10)).to_dict()
    for training_info, message in [
        (
            {TRAIN_DATA_KEY: other, "seed": 7},
            r"this run holds out other training rows than its snapshots \(seed 7 where 3 was recorded; "
            r"3 held-out rows, of which 2 are among the 3 recorded\)",
        ),
        ({}, r"its snapshots record the training data they held out \(training.train_data\), this run none"),
    ]:
        accelerator, model, optimizer, loader, resumed = helper(training_info)
        with pytest.raises(ResumeMismatchError, match=rf"resuming in {tmp_path / 'snapshots'}: {message}.*output_dir"):
            accelerator.load_state(tmp_path / "state")  # before any step of the resumed run
        assert (tmp_path / "snapshots" / "manifest.json").read_bytes() == manifest_bytes

    accelerator, model, optimizer, loader, resumed = helper(first)
    accelerator.load_state(tmp_path / "state")
    _epoch(accelerator, model, optimizer, loader, resumed)
    resumed.end()
    manifest = read_manifest(tmp_path / "snapshots")
    assert [r.global_step for r in manifest.snapshots] == [4, 8] and manifest.training[TRAIN_DATA_KEY] == recorded


def test_the_resume_check_takes_moved_data_for_the_same_and_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    """A run resumed on another machine records its data file under another folder: the same file name is the same
    data. A record of another shape is refused on every process rather than failing on the main one alone."""
    import json

    from hf_sgdr.training.distributed import ProcessSync
    from hf_sgdr.training.snapshot_recorder import check_resumed_training_data

    accelerator, model, optimizer, loader = _setup()
    scheduler = SGDRScheduler(optimizer, T_0=4)
    recorded = TrainData("train", 48, (1, 5, 9), data_file="/home/alice/data/train.csv").to_dict()
    sgdr = SGDRAccelerateHelper(
        accelerator, model, scheduler, output_dir=tmp_path, training_info={TRAIN_DATA_KEY: recorded}
    )
    _epoch(accelerator, model, optimizer, loader, sgdr, stop_after=5)
    sgdr.end()
    snapshots = tmp_path / "snapshots"
    moved = {TRAIN_DATA_KEY: {**recorded, "data_file": "/mnt/bob/copy/train.csv"}}
    assert check_resumed_training_data(snapshots, moved, ProcessSync()) is not None  # no error
    other = {TRAIN_DATA_KEY: {**recorded, "data_file": "/mnt/bob/copy/dev.csv"}}
    with pytest.raises(ResumeMismatchError, match=r"data_file '/mnt/bob/copy/dev.csv' where '/home/alice/data/"):
        check_resumed_training_data(snapshots, other, ProcessSync())
    manifest = json.loads((snapshots / "manifest.json").read_text())
    manifest["training"][TRAIN_DATA_KEY] = "rows 1, 5 and 9"
    (snapshots / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResumeMismatchError, match=r"record of the training data cannot be compared \(AttributeError"):
        check_resumed_training_data(snapshots, moved, ProcessSync())
