"""A plain Accelerate loop resumed from a mid-cycle checkpoint records, with that cycle's snapshot, the mean
loss over the whole cycle (the steps before the checkpoint included), as an uninterrupted run does: the
helper's loss sum travels in `accelerator.save_state`. (The Trainer path: `test_training_resume`.)"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from helpers.training import byte_lm_data, read_manifest, tiny_gpt2
from torch.utils.data import DataLoader
from transformers import default_data_collator

from hf_sgdr import SGDRAccelerateHelper, SGDRScheduler
from hf_sgdr.training import ResumePoint, epoch_batches, find_checkpoint, save_checkpoint

ACCUMULATION = 2
STEPS_PER_EPOCH = 6  # 48 examples, batches of 4, 2 micro-batches per optimizer step
NUM_EPOCHS = 2  # cycles of 4 steps: 1-4, 5-8, 9-12


def _setup(out: Path) -> tuple[Accelerator, torch.nn.Module, torch.optim.Optimizer, DataLoader, SGDRAccelerateHelper]:
    set_seed(0)
    accelerator = Accelerator(
        cpu=True,
        gradient_accumulation_steps=ACCUMULATION,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(byte_lm_data(48), batch_size=4, shuffle=True, collate_fn=default_data_collator)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = SGDRScheduler(optimizer, T_0=4)
    return accelerator, model, optimizer, loader, SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=out)


def _train(out: Path, *, stop_at: int | None = None, resume: bool = False) -> SGDRAccelerateHelper:
    """The recipes' loop, a checkpoint every 3 optimizer steps (3 and 9 fall mid-cycle)."""
    accelerator, model, optimizer, loader, sgdr = _setup(out)
    if resume:
        accelerator.load_state(find_checkpoint("latest", out))
    point = ResumePoint.after(sgdr.global_step, STEPS_PER_EPOCH, ACCUMULATION)
    for epoch in range(point.epoch, NUM_EPOCHS):
        model.train()
        for batch in epoch_batches(accelerator, loader, epoch, skip=point.skip(epoch)):
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            sgdr.step(loss=loss)
            if accelerator.sync_gradients and sgdr.global_step % 3 == 0:
                save_checkpoint(accelerator, out, sgdr.global_step)
            if accelerator.sync_gradients and sgdr.global_step == stop_at:
                sgdr.end()
                return sgdr
    sgdr.end()
    return sgdr


def test_a_resumed_run_records_the_whole_cycles_mean_loss(tmp_path: Path) -> None:
    _train(tmp_path / "reference")
    interrupted = tmp_path / "interrupted"
    _train(interrupted, stop_at=3)  # checkpoint at step 3, mid-cycle 0 (steps 1-4); no snapshot yet
    assert read_manifest(interrupted / "snapshots").snapshots == []
    _train(interrupted, resume=True)

    expected = read_manifest(tmp_path / "reference" / "snapshots").snapshots
    resumed = read_manifest(interrupted / "snapshots").snapshots
    assert [r.global_step for r in expected] == [4, 8, 12]
    assert all(r.train_loss is not None for r in expected)
    assert [(r.name, r.global_step, r.train_loss) for r in resumed] == [
        (r.name, r.global_step, r.train_loss) for r in expected
    ]
