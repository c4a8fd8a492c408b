"""Gradient accumulation with the `Trainer`: a head whose `forward` takes `**kwargs` but computes a plain mean
loss gets no division by `gradient_accumulation_steps` (transformers#47688). The callback says so before
training, names the fix, and the fix it names makes accumulation exact."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.training import byte_lm_data, minilm, sst2, tiny_gpt2, training_args
from peft import LoraConfig, get_peft_model
from transformers import Trainer

from hf_sgdr.training import SGDRCallback, SGDRTrainer
from hf_sgdr.training.loss_scaling import drops_loss_kwargs, unscaled_loss_warning

LOGGER = "hf_sgdr.training.callback"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the callback warned (the model load and the offline datasets warn too)."""
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def _without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout masks depend on the micro-batch split; without them GA 2 x 2 must equal one batch of 4."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _train(tmp_path: Path, model: torch.nn.Module, batch: int, accumulation: int) -> tuple[list[float], torch.Tensor]:
    """Plain SGD (which, unlike AdamW, feels the gradient's scale) over 16 SST-2 sentences with the stock Trainer."""
    args = training_args(
        tmp_path / f"run-{batch}x{accumulation}",
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        optim="sgd",
        learning_rate=0.05,
        max_grad_norm=0.0,
        lr_scheduler_type="sgdr",
        lr_scheduler_kwargs={"T_0": 2},
        logging_steps=1,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=sst2("train", 16), callbacks=[SGDRCallback(save_snapshots=False)]
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses, torch.cat([p.detach().flatten() for p in model.parameters()])


def test_the_warning_is_true_and_the_fix_it_names_makes_accumulation_exact(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    one_batch_losses, one_batch_weights = _train(tmp_path, _without_dropout(minilm()), batch=4, accumulation=1)
    assert not _warnings(caplog)

    unscaled = _without_dropout(minilm())
    warned = drops_loss_kwargs(unscaled)
    unscaled_losses, unscaled_weights = _train(tmp_path, unscaled, batch=2, accumulation=2)
    inflated = not torch.allclose(unscaled_weights, one_batch_weights, atol=1e-6)
    assert warned == inflated == bool(_warnings(caplog))  # warned exactly when transformers leaves the loss unscaled
    if warned:
        (message,) = _warnings(caplog)
        assert "BertForSequenceClassification" in message
        assert "gradient_accumulation_steps=2" in message and "2x too large" in message
        assert "model.accepts_loss_kwargs = False" in message
        # Same weights at step 1, so the first logged loss is the sum of the two micro-batch means: twice the mean.
        assert unscaled_losses[0] == pytest.approx(2 * one_batch_losses[0], rel=1e-3)

    caplog.clear()
    fixed = _without_dropout(minilm())
    fixed.accepts_loss_kwargs = False
    fixed_losses, fixed_weights = _train(tmp_path, fixed, batch=2, accumulation=2)
    assert not _warnings(caplog)
    assert fixed_losses == pytest.approx(one_batch_losses, rel=1e-4)
    torch.testing.assert_close(fixed_weights, one_batch_weights, atol=1e-6, rtol=0)


def test_sgdr_trainer_warns_unless_something_else_scales_the_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`SGDRTrainer` runs the same check with the Trainer in hand: a `compute_loss_func` settles it."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    args = training_args(tmp_path, gradient_accumulation_steps=2, max_steps=1)
    options = {"sgdr_T_0": 1, "save_snapshots": False}
    model = minilm()
    SGDRTrainer(model=model, args=args, train_dataset=sst2("train", 16), **options).train()
    assert [message.split(".forward")[0] for message in _warnings(caplog)] == ["BertForSequenceClassification"]

    caplog.clear()

    def mean_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(outputs.logits, labels, reduction="sum") / num_items_in_batch

    trainer = SGDRTrainer(
        model=model, args=args, train_dataset=sst2("train", 16), compute_loss_func=mean_loss, **options
    )
    trainer.train()
    assert not _warnings(caplog)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"gradient_accumulation_steps": 2}, True),
        ({"gradient_accumulation_steps": 1}, False),
        ({"gradient_accumulation_steps": 2, "label_smoothing_factor": 0.1}, False),  # the smoother divides
    ],
)
def test_only_accumulation_with_the_model_s_own_loss_is_warned(tmp_path: Path, overrides: dict, expected: bool) -> None:
    model = minilm()
    assert (unscaled_loss_warning(model, training_args(tmp_path, **overrides)) is not None) is expected


def test_wrapped_models_are_judged_by_the_model_inside(tmp_path: Path) -> None:
    """PEFT and `torch.compile` wrappers are looked through, the way the Trainer looks through them."""
    args = training_args(tmp_path, gradient_accumulation_steps=2)
    lora = get_peft_model(minilm(), LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))
    assert "BertForSequenceClassification" in unscaled_loss_warning(lora, args)
    assert "BertForSequenceClassification" in unscaled_loss_warning(torch.compile(minilm()), args)


def test_a_model_that_normalizes_its_own_loss_is_not_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """GPT-2's causal-LM loss divides by `num_items_in_batch`: the Trainer is right to skip its division."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    args = training_args(tmp_path, gradient_accumulation_steps=2, max_steps=1)
    options = {"sgdr_T_0": 1, "save_snapshots": False}
    SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(16), **options).train()
    assert not drops_loss_kwargs(tiny_gpt2())
    assert not _warnings(caplog)
