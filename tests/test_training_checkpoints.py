"""The checkpoints of a plain Accelerate loop (`hf_sgdr.training.loop_checkpoints`), in a real loop on one
process: saves are atomic, the newest complete one is found past a save cut short, and a run resumed
mid-epoch gives the losses and weights of an uninterrupted run exactly (dropout on, shuffled batches)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from helpers.training import byte_lm_data, temporaries, tiny_gpt2
from torch.utils.data import DataLoader
from transformers import default_data_collator

from hf_sgdr import SGDRAccelerateHelper, SGDRScheduler
from hf_sgdr.training import ResumePoint, epoch_batches, find_checkpoint, latest_checkpoint, save_checkpoint

ACCUMULATION = 2
STEPS_PER_EPOCH = 6  # 48 examples, batches of 4, 2 micro-batches per optimizer step
NUM_EPOCHS = 2


def _setup(
    seed: int = 0,
) -> tuple[Accelerator, torch.nn.Module, torch.optim.Optimizer, DataLoader, SGDRAccelerateHelper]:
    set_seed(seed)
    accelerator = Accelerator(
        cpu=True,
        gradient_accumulation_steps=ACCUMULATION,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    model = tiny_gpt2(seed)  # GPT-2's dropout is on: the resumed RNG state matters
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(byte_lm_data(48), batch_size=4, shuffle=True, collate_fn=default_data_collator)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = SGDRScheduler(optimizer, T_0=4, reset_optimizer_state=True)
    sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, save_snapshots=False)
    return accelerator, model, optimizer, loader, sgdr


def _train(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    sgdr: SGDRAccelerateHelper,
    *,
    stop_at: int | None = None,
    checkpoint_every: int | None = None,
    output_dir: Path | None = None,
) -> dict[int, float]:
    """The recipes' loop; returns the loss of each optimizer step (its last micro-batch)."""
    losses = {}
    resume = ResumePoint.after(sgdr.global_step, STEPS_PER_EPOCH, ACCUMULATION)
    for epoch in range(resume.epoch, NUM_EPOCHS):
        model.train()
        for batch in epoch_batches(accelerator, loader, epoch, skip=resume.skip(epoch)):
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            sgdr.step(loss=loss)
            if not accelerator.sync_gradients:
                continue
            losses[sgdr.global_step] = loss.item()
            if checkpoint_every and sgdr.global_step % checkpoint_every == 0:
                save_checkpoint(accelerator, output_dir, sgdr.global_step)
            if sgdr.global_step == stop_at:
                return losses
    return losses


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_resuming_mid_epoch_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    accelerator, model, optimizer, loader, sgdr = _setup()
    expected = _train(accelerator, model, optimizer, loader, sgdr)
    expected_weights = _weights(model)
    assert sorted(expected) == list(range(1, NUM_EPOCHS * STEPS_PER_EPOCH + 1))

    # Interrupted after step 8: two optimizer steps (4 batches) into the second epoch, checkpoint at step 8.
    out = tmp_path / "out"
    interrupted = _train(*_setup(), stop_at=8, checkpoint_every=4, output_dir=out)
    assert interrupted == {step: expected[step] for step in range(1, 9)}

    # The same command line again (the seedable sampler's order comes from the seed), then the load: it
    # must restore what has moved since, the weights and the global RNG.
    accelerator, model, optimizer, loader, sgdr = _setup()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    torch.rand(100)
    checkpoint = find_checkpoint("latest", out)
    assert checkpoint == out / "step_8"
    accelerator.load_state(checkpoint)
    assert sgdr.global_step == 8 and sgdr.scheduler.last_epoch == 8
    assert ResumePoint.after(sgdr.global_step, STEPS_PER_EPOCH, ACCUMULATION) == ResumePoint(1, 4)
    resumed = _train(accelerator, model, optimizer, loader, sgdr)
    assert resumed == {step: expected[step] for step in range(9, 13)}  # the same batches and dropout masks
    weights = _weights(model)
    assert weights.keys() == expected_weights.keys()
    for name, tensor in expected_weights.items():
        assert torch.equal(weights[name], tensor), name


def test_latest_complete_checkpoint_skips_a_save_cut_short(tmp_path: Path) -> None:
    accelerator, model, optimizer, loader, sgdr = _setup()
    assert latest_checkpoint(tmp_path / "missing") is None and find_checkpoint("latest", tmp_path) is None
    _train(accelerator, model, optimizer, loader, sgdr, stop_at=4, checkpoint_every=2, output_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_2", "step_4"]  # no temporary left behind

    # A save killed before its rename leaves a temporary folder that looks complete; other names are no checkpoints.
    accelerator.save_state(str(tmp_path / ".tmp-step_6"))
    (tmp_path / "step_9").write_text("a file, not a checkpoint folder")
    (tmp_path / "step_final").mkdir()
    (tmp_path / "checkpoint-10").mkdir()
    assert latest_checkpoint(tmp_path) == find_checkpoint("latest", tmp_path) == tmp_path / "step_4"

    # Saving that step again starts the temporary afresh and puts step_6 in place.
    _train(accelerator, model, optimizer, loader, sgdr, stop_at=6, checkpoint_every=2, output_dir=tmp_path)
    assert latest_checkpoint(tmp_path) == tmp_path / "step_6"
    assert temporaries(tmp_path) == []
    assert find_checkpoint(tmp_path / "step_2", tmp_path) == tmp_path / "step_2"  # a folder named explicitly
    assert find_checkpoint(None, tmp_path) is None


def test_bad_arguments_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"resume_from_checkpoint='.*step_3' is not a folder"):
        find_checkpoint(tmp_path / "step_3", tmp_path)
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"resume_from_checkpoint=.*notes\.txt' is not a folder"):
        find_checkpoint(str(tmp_path / "notes.txt"), tmp_path)
    (tmp_path / ".tmp-step_4").mkdir()
    with pytest.raises(ValueError, match=r"resume_from_checkpoint=.*whose save never finished"):
        find_checkpoint(tmp_path / ".tmp-step_4", tmp_path)
    with pytest.raises(ValueError, match="completed_steps must be an integer >= 0; got -1"):
        ResumePoint.after(-1, STEPS_PER_EPOCH)
    with pytest.raises(ValueError, match="steps_per_epoch must be an integer >= 1; got 0"):
        ResumePoint.after(3, 0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps must be an integer >= 1; got 0"):
        ResumePoint.after(3, STEPS_PER_EPOCH, 0)
    accelerator = Accelerator(cpu=True)
    with pytest.raises(ValueError, match="skip must be an integer >= 0; got -2"):
        epoch_batches(accelerator, [], 0, skip=-2)
    with pytest.raises(ValueError, match="step must be an integer >= 0; got 'last'"):
        save_checkpoint(accelerator, tmp_path, "last")
