"""Gradient accumulation with the `Trainer`: a head whose `forward` takes `**kwargs` but computes a plain mean
loss gets no division by `gradient_accumulation_steps` (transformers#47688). The callback says so before
training, names the fix, and the fix it names makes accumulation exact."""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.training import (
    assert_clean_exit,
    byte_lm_data,
    launch_two_cpu_processes,
    minilm,
    sst2,
    tiny_gpt2,
    training_args,
)
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification

from hf_sgdr.training import SGDRCallback, SGDRTrainer
from hf_sgdr.training.loss_scaling import drops_loss_kwargs, unscaled_loss_warning

LOGGER = "hf_sgdr.training.callback"
TESTS = Path(__file__).resolve().parent
SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_accumulated_loss import run_two_processes
run_two_processes(sys.argv[1])
"""


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the callback warned (the model load and the offline datasets warn too)."""
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def _without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout masks depend on the micro-batch split; without them GA 2 x 2 must equal one batch of 4."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _train(
    output_dir: Path,
    model: torch.nn.Module,
    batch: int,
    accumulation: int,
    data: Any = None,
    **overrides: Any,
) -> Trainer:
    """The stock Trainer with `SGDRCallback` over `data` (16 SST-2 sentences by default), trained with plain SGD
    (which, unlike AdamW, feels the gradient's scale) unless `overrides` say otherwise."""
    values = {"optim": "sgd", "learning_rate": 0.05, "max_grad_norm": 0.0, "lr_scheduler_kwargs": {"T_0": 2}}
    args = training_args(
        output_dir,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        lr_scheduler_type="sgdr",
        logging_steps=1,
        **{**values, **overrides},
    )
    data = sst2("train", 16) if data is None else data
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[SGDRCallback(save_snapshots=False)])
    trainer.train()
    return trainer


def _losses_and_weights(
    tmp_path: Path, model: torch.nn.Module, batch: int, accumulation: int, data: Any = None
) -> tuple[list[float], torch.Tensor]:
    """The losses a run logs, and its weights at the end."""
    trainer = _train(tmp_path / f"run-{batch}x{accumulation}-{id(model)}", model, batch, accumulation, data)
    return _logged_losses(trainer), torch.cat([p.detach().flatten() for p in model.parameters()])


def _logged_losses(trainer: Trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_the_warning_is_true_and_the_fix_it_names_makes_accumulation_exact(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    one_batch = _without_dropout(minilm())
    one_batch_losses, one_batch_weights = _losses_and_weights(tmp_path, one_batch, batch=4, accumulation=1)
    assert not _warnings(caplog)

    unscaled = _without_dropout(minilm())
    assert drops_loss_kwargs(unscaled)  # BERT's heads take **kwargs and compute a plain mean (transformers 5.6-5.25)
    unscaled_losses, unscaled_weights = _losses_and_weights(tmp_path, unscaled, batch=2, accumulation=2)
    (message,) = _warnings(caplog)
    assert "BertForSequenceClassification" in message
    assert "gradient_accumulation_steps=2, 1 process(es)" in message and "2x too large" in message
    assert "`model.accepts_loss_kwargs = False`" in message
    # The warning is true: same weights at step 1, so the first logged loss is the sum of the two micro-batch
    # means, twice the mean; the doubled gradients make plain SGD end elsewhere.
    assert unscaled_losses[0] == pytest.approx(2 * one_batch_losses[0], rel=1e-3)
    assert not torch.allclose(unscaled_weights, one_batch_weights, atol=1e-3)

    caplog.clear()
    fixed = _without_dropout(minilm())
    fixed.accepts_loss_kwargs = False
    fixed_losses, fixed_weights = _losses_and_weights(tmp_path, fixed, batch=2, accumulation=2)
    assert not _warnings(caplog)
    assert fixed_losses == pytest.approx(one_batch_losses, rel=1e-4)
    torch.testing.assert_close(fixed_weights, one_batch_weights, atol=1e-5, rtol=0)


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
    """PEFT and `torch.compile` wrappers are looked through, the way the Trainer looks through them, and the
    fix is named where the Trainer reads it: on a PEFT model's base model."""
    args = training_args(tmp_path, gradient_accumulation_steps=2)
    lora = get_peft_model(minilm(), LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))
    assert "`model.get_base_model().accepts_loss_kwargs = False`" in unscaled_loss_warning(lora, args)
    lora.get_base_model().accepts_loss_kwargs = False
    assert unscaled_loss_warning(lora, args) is None
    assert "`model.accepts_loss_kwargs = False`" in unscaled_loss_warning(torch.compile(minilm()), args)


def test_a_trainer_in_hand_settles_who_scales_the_loss(tmp_path: Path) -> None:
    """The Trainer's own switch, its label smoother or a subclass's `loss_is_scaled_for_ga` silence the warning."""
    args = training_args(tmp_path, gradient_accumulation_steps=2)
    model = minilm()
    assert unscaled_loss_warning(model, args, Trainer(model=model, args=args)) is not None

    switched = Trainer(model=model, args=args)
    switched.model_accepts_loss_kwargs = False
    smoothing = training_args(tmp_path, gradient_accumulation_steps=2, label_smoothing_factor=0.1)
    scaled = Trainer(model=model, args=args)
    scaled.loss_is_scaled_for_ga = False
    for trainer in (switched, Trainer(model=model, args=smoothing), scaled):
        assert unscaled_loss_warning(model, trainer.args, trainer) is None


def test_the_fix_set_after_the_trainer_was_built_is_still_warned(tmp_path: Path) -> None:
    """The Trainer reads `accepts_loss_kwargs` when it is built: set later, it changes nothing, and the warning
    says so instead of going quiet."""
    args = training_args(tmp_path, gradient_accumulation_steps=2)
    model = minilm()
    trainer = Trainer(model=model, args=args)
    model.accepts_loss_kwargs = False
    assert trainer.model_accepts_loss_kwargs  # what the Trainer acts on
    message = unscaled_loss_warning(model, args, trainer)
    assert message.startswith("`model.accepts_loss_kwargs = False` was set after the Trainer was built")
    assert "2x too large" in message and "before building the Trainer" in message
    assert unscaled_loss_warning(model, args) is None  # without the Trainer: taken as read when it was built
    assert unscaled_loss_warning(model, args, Trainer(model=model, args=args)) is None  # set in time
    normalizing = tiny_gpt2()  # divides by num_items_in_batch itself: the late switch changes nothing wrong
    trainer = Trainer(model=normalizing, args=args)
    normalizing.accepts_loss_kwargs = False
    assert trainer.model_accepts_loss_kwargs and unscaled_loss_warning(normalizing, args, trainer) is None


def test_a_model_that_normalizes_its_own_loss_is_not_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """GPT-2's causal-LM loss divides by `num_items_in_batch`: the Trainer is right to skip its division."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    args = training_args(tmp_path, gradient_accumulation_steps=2, max_steps=1)
    options = {"sgdr_T_0": 1, "save_snapshots": False}
    SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(16), **options).train()
    assert not drops_loss_kwargs(tiny_gpt2())
    assert not _warnings(caplog)


def _tiny_vit(problem_type: str | None, num_labels: int) -> ViTForImageClassification:
    """A dropout-free one-layer ViT for 8x8 images, the same weights every call."""
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=8,
        patch_size=4,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=num_labels,
        problem_type=problem_type,
    )
    return ViTForImageClassification(config)


def _images(problem_type: str, num_labels: int) -> list[dict[str, torch.Tensor]]:
    """16 random 8x8 images with labels of the kind `problem_type` reads. Random pixels are enough here: the test
    is about how the Trainer scales the loss, not about what the model learns."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(16, 3, 8, 8, generator=generator)
    labels = {
        "single_label_classification": torch.randint(num_labels, (16,), generator=generator),
        "multi_label_classification": torch.randint(2, (16, num_labels), generator=generator).float(),
        "regression": torch.randn(16, generator=generator),
    }[problem_type]
    return [{"pixel_values": image, "labels": label} for image, label in zip(pixels, labels, strict=True)]


@pytest.mark.parametrize(
    ("problem_type", "num_labels", "unscaled"),
    [
        ("multi_label_classification", 3, True),  # BCE, a plain mean
        ("regression", 1, True),  # MSE, a plain mean
        ("single_label_classification", 3, False),  # cross-entropy, divided by num_items_in_batch
    ],
)
def test_a_classification_loss_is_judged_by_its_problem_type(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, problem_type: str, num_labels: int, unscaled: bool
) -> None:
    """Image (and audio, video) classifiers pass `**kwargs` on to transformers' classification loss, which uses
    `num_items_in_batch` for single-label classification only: multi-label and regression come out unscaled,
    and only they are warned."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    data = _images(problem_type, num_labels)
    one_batch_losses, one_batch_weights = _losses_and_weights(
        tmp_path, _tiny_vit(problem_type, num_labels), batch=4, accumulation=1, data=data
    )
    accumulated = _tiny_vit(problem_type, num_labels)
    assert drops_loss_kwargs(accumulated) is unscaled
    accumulated_losses, accumulated_weights = _losses_and_weights(tmp_path, accumulated, 2, 2, data)
    if not unscaled:
        assert not _warnings(caplog)
        assert accumulated_losses == pytest.approx(one_batch_losses, rel=1e-4)
        torch.testing.assert_close(accumulated_weights, one_batch_weights, atol=1e-5, rtol=0)
        return
    (message,) = _warnings(caplog)
    assert message.startswith("ViTForImageClassification.forward") and "2x too large" in message
    assert accumulated_losses[0] == pytest.approx(2 * one_batch_losses[0], rel=1e-3)

    caplog.clear()
    fixed = _tiny_vit(problem_type, num_labels)
    fixed.accepts_loss_kwargs = False
    fixed_losses, fixed_weights = _losses_and_weights(tmp_path, fixed, 2, 2, data)
    assert not _warnings(caplog)
    assert fixed_losses == pytest.approx(one_batch_losses, rel=1e-4)
    torch.testing.assert_close(fixed_weights, one_batch_weights, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("labels", "unscaled"), [("multi_label_classification", True), ("single_label_classification", False)]
)
def test_a_problem_type_the_first_batch_decides_is_checked_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, labels: str, unscaled: bool
) -> None:
    """With `problem_type` unset, transformers reads float labels as multi-label (BCE, a plain mean) at the first
    batch: nothing says so before training, so the callback warns after the first step, once; integer labels make
    it single-label, which the Trainer scales right, and nothing is said."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    model = _tiny_vit(None, 3)
    _train(tmp_path, model, 2, 2, _images(labels, 3))
    assert model.config.problem_type == labels
    messages = _warnings(caplog)
    if not unscaled:
        assert not messages
        return
    (message,) = messages
    assert message.startswith("the first batch's float labels made transformers set problem_type=")
    assert "ViTForImageClassification.forward" in message and "2x too large" in message


def _first_logged_loss(out: str, fixed: bool) -> tuple[float, TrainingArguments]:
    """One step, with or without the fix: the loss the Trainer logs, and its arguments."""
    model = _without_dropout(minilm())
    if fixed:
        model.accepts_loss_kwargs = False
    trainer = _train(Path(out, f"fixed-{fixed}"), model, 2, 1, max_steps=1, lr_scheduler_kwargs={"T_0": 1})
    return _logged_losses(trainer)[0], trainer.args


def run_two_processes(out: str) -> None:
    """In each of two processes: one step without, then with, the fix; a report file per rank.

    The DDP-wrapped models are freed while the process group is alive: freed after `destroy_process_group`,
    the last one destroyed the group holding the GIL while a gloo thread waited for it (a hang seen in CI).
    """
    import torch.distributed as dist

    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger(LOGGER).addHandler(handler)
    losses = {}
    for fixed in (False, True):
        losses[str(fixed)], args = _first_logged_loss(out, fixed)
    gc.collect()  # the trainers' reference cycles hold the DDP reducers, and they the process group
    ddp_left = sum(isinstance(o, torch.nn.parallel.DistributedDataParallel) for o in gc.get_objects())
    report = {"world_size": args.world_size, "warnings": messages, "losses": losses, "ddp_left": ddp_left}
    Path(out, f"rank{args.process_index}.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.multiprocess
def test_two_processes_make_the_loss_twice_too_large_without_accumulation(tmp_path: Path) -> None:
    """Averaging tokens across devices, the Trainer multiplies by the process count: N processes, N times."""
    script = tmp_path / "two.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    result = launch_two_cpu_processes(str(script), str(tmp_path), timeout=150)  # about 20 s; a hang ends sooner
    assert_clean_exit(result)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    assert [rank["ddp_left"] for rank in ranks] == [0, 0]
    (message,) = ranks[0]["warnings"]  # the main process warns, once; the other stays quiet
    assert ranks[1]["warnings"] == []
    assert "gradient_accumulation_steps=1, 2 process(es)" in message and "2x too large" in message
    losses = ranks[0]["losses"]
    assert losses["False"] == pytest.approx(2 * losses["True"], rel=1e-3)
