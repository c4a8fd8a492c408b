"""Warn before training when the `Trainer` will leave a model's loss unscaled.

The Trainer takes a `forward` with `**kwargs` to mean that the model normalizes its own loss by
`num_items_in_batch` (the label count of the whole accumulated, all-process batch), so it skips the
division by `gradient_accumulation_steps` and, averaging tokens across devices, multiplies by the number
of processes. Many heads take `**kwargs` but compute a plain mean (the BERT family's classifiers,
masked-LM and token-classification heads, T5, the decoder sequence classifiers, and the image, audio and
video classifiers set up for regression or multi-label classification): their loss, their
gradients and the logged `loss` / `train_loss` come out that many times too large (transformers#47688).
AdamW barely notices, gradient clipping (`max_grad_norm`, 1.0 by default), plain SGD and every logged
loss do. The Trainer's own switch, `accepts_loss_kwargs = False` on the model, restores the mean.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING

import torch
from transformers import TrainingArguments
from transformers.loss.loss_utils import LOSS_MAPPING, ForSequenceClassificationLoss

from ..snapshot_format.model_description import is_peft_model, unwrap_model

if TYPE_CHECKING:
    from transformers import Trainer

UPSTREAM_ISSUE = "https://github.com/huggingface/transformers/issues/47688"

# `self.loss_function(..., **kwargs)`: the kwargs, `num_items_in_batch` among them, reach the loss.
_LOSS_FUNCTION_GETS_KWARGS = re.compile(r"loss_function\((?:[^()]|\([^()]*\))*\*\*kwargs")


def drops_loss_kwargs(model: torch.nn.Module) -> bool:
    """Whether the Trainer will hand `model` a `num_items_in_batch` that its loss ignores (see
    `loss_ignores_item_count`). A model that declares `accepts_loss_kwargs` has decided."""
    return not hasattr(model, "accepts_loss_kwargs") and loss_ignores_item_count(model)


def loss_ignores_item_count(model: torch.nn.Module) -> bool:
    """Whether `model.forward` takes `labels` and `**kwargs` (so the Trainer hands it `num_items_in_batch`) while
    the loss it computes ignores them: its source never passes them to the loss, or passes them to a
    classification loss that takes a plain mean for the model's problem type. A `forward` without readable source
    is given the benefit of the doubt."""
    forward = inspect.unwrap(type(model).forward)
    parameters = inspect.signature(forward).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if not takes_kwargs or "labels" not in parameters:
        return False  # no `**kwargs`: the Trainer divides; no `labels`: no `num_items_in_batch`, it divides too
    try:
        source = inspect.getsource(forward)
    except (OSError, TypeError):
        return False
    if "num_items_in_batch" in source:
        return False
    return _LOSS_FUNCTION_GETS_KWARGS.search(source) is None or _classification_loss_takes_a_plain_mean(model)


def _classification_loss_takes_a_plain_mean(model: torch.nn.Module) -> bool:
    """Whether the model's `loss_function` is transformers' classification loss (sequence, image, audio and video
    heads) set up for regression (MSE) or multi-label classification (BCE): those branches drop the kwargs that
    single-label classification passes on. A `problem_type` left unset with several classes is decided by the
    first batch (float labels: multi-label; see `problem_type_awaits_first_batch`)."""
    config = getattr(model, "config", None)
    if not _uses_classification_loss(model) or config is None:
        return False
    problem_type = config.problem_type or ("regression" if config.num_labels == 1 else None)
    return problem_type in ("regression", "multi_label_classification")


def _uses_classification_loss(model: torch.nn.Module) -> bool:
    """Whether the model's `loss_function` is transformers' classification loss."""
    loss_function = getattr(model, "_loss_function", None) or LOSS_MAPPING.get(getattr(model, "loss_type", None))
    return loss_function is ForSequenceClassificationLoss


def problem_type_awaits_first_batch(model: torch.nn.Module | None) -> bool:
    """Whether transformers' classification loss will pick the model's `problem_type` from its first batch of labels
    (unset, several classes), so that whether the loss ignores `num_items_in_batch` is known only after it."""
    if model is None:
        return False
    inner, _ = _model_with_the_loss(model)
    config = getattr(inner, "config", None)
    return (
        _uses_classification_loss(inner)
        and config is not None
        and config.problem_type is None
        and config.num_labels > 1
    )


def _model_with_the_loss(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """The model whose `forward` computes the loss (under any wrapper and PEFT), and how the user reaches it."""
    inner = unwrap_model(model)
    if is_peft_model(inner):
        return inner.get_base_model(), "model.get_base_model()"
    return inner, "model"


def _processes_multiplying(args: TrainingArguments, trainer: Trainer | None) -> int:
    """By how much the Trainer multiplies a loss it takes for normalized: with `average_tokens_across_devices`, the
    number of processes (GPUs under `DataParallel`) that share the batch (tensor-parallel ranks share one)."""
    if not args.average_tokens_across_devices:
        return 1
    if args.n_gpu > 1:
        return args.n_gpu
    tensor_parallel = trainer.get_tp_size() if trainer is not None else 1
    return max(args.world_size // max(tensor_parallel, 1), 1)


def _loss_left_to_the_model(args: TrainingArguments, trainer: Trainer | None) -> bool:
    """Whether the model's own loss is what gets scaled (no label smoother, no `compute_loss_func`, no subclass
    deciding, and the Trainer treating the model as normalizing itself)."""
    if trainer is None:
        return args.label_smoothing_factor == 0  # the label smoother divides by `num_items_in_batch` itself
    return (
        trainer.model_accepts_loss_kwargs
        and trainer.label_smoother is None
        and trainer.compute_loss_func is None
        and getattr(trainer, "loss_is_scaled_for_ga", None) is None  # not in transformers 5.6
    )


def unscaled_loss_warning(
    model: torch.nn.Module | None, args: TrainingArguments, trainer: Trainer | None = None
) -> str | None:
    """The warning for a Trainer run that will leave a plain-mean loss unscaled; `None` when it scales it right.

    `trainer` (when known) settles what the model and the arguments cannot tell.
    """
    steps, processes = args.gradient_accumulation_steps, _processes_multiplying(args, trainer)
    if model is None or steps * processes <= 1 or not _loss_left_to_the_model(args, trainer):
        return None
    inner, target = _model_with_the_loss(model)
    if getattr(inner, "accepts_loss_kwargs", None) is False and trainer is not None:
        # The Trainer in hand still takes the model for one that normalizes: it read the model before this was set.
        if not loss_ignores_item_count(inner):
            return None
        cause = f"`{target}.accepts_loss_kwargs = False` was set after the Trainer was built, which read it then"
    elif drops_loss_kwargs(inner):  # without the Trainer, a declared value is taken as the one it read when built
        cause = f"{type(inner).__name__}.forward takes **kwargs but its loss ignores num_items_in_batch"
    else:
        return None
    return (
        f"{cause}, so the Trainer does not scale the loss (gradient_accumulation_steps={steps}, {processes} "
        f"process(es)): the loss, its gradients and the logged loss / train_loss come out {steps * processes}x too "
        f"large ({UPSTREAM_ISSUE}). Set `{target}.accepts_loss_kwargs = False` before building the Trainer to "
        "train on the mean over the batch."
    )
