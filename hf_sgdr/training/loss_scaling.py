"""Warn before training when the `Trainer` will leave a model's loss unscaled under gradient accumulation.

The Trainer takes a `forward` with `**kwargs` to mean that the model normalizes its own loss by
`num_items_in_batch`, so it skips the division by `gradient_accumulation_steps`. Many heads take
`**kwargs` but compute a plain mean (the BERT family's classifiers, every question-answering head, T5,
the decoder sequence classifiers): with accumulation their loss, their gradients and the logged
`loss` / `train_loss` come out `gradient_accumulation_steps` times too large (transformers#47688).
AdamW barely notices; plain SGD, gradient clipping and every logged loss do. The Trainer's own switch,
`model.accepts_loss_kwargs = False`, restores the mean over the accumulated batch.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from transformers import TrainingArguments

from ..snapshot_format.model_description import is_peft_model, unwrap_model

UPSTREAM_ISSUE = "https://github.com/huggingface/transformers/issues/47688"

# `self.loss_function(..., **kwargs)`: the kwargs, `num_items_in_batch` among them, reach the loss.
_LOSS_FUNCTION_GETS_KWARGS = re.compile(r"loss_function\((?:[^()]|\([^()]*\))*\*\*kwargs")


def drops_loss_kwargs(model: torch.nn.Module) -> bool:
    """Whether `model.forward` takes `labels` and `**kwargs` (so the Trainer hands it `num_items_in_batch`)
    while its source never passes them to the loss. A model that declares `accepts_loss_kwargs` has decided; a
    `forward` without readable source is given the benefit of the doubt."""
    if hasattr(model, "accepts_loss_kwargs"):
        return False
    forward = inspect.unwrap(type(model).forward)
    parameters = inspect.signature(forward).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if not takes_kwargs or "labels" not in parameters:
        return False  # no `**kwargs`: the Trainer divides; no `labels`: the model computes no loss
    try:
        source = inspect.getsource(forward)
    except (OSError, TypeError):
        return False
    return "num_items_in_batch" not in source and _LOSS_FUNCTION_GETS_KWARGS.search(source) is None


def unscaled_loss_warning(model: Any, args: TrainingArguments, trainer: Any = None) -> str | None:
    """The warning for a Trainer run whose loss will not be divided by `gradient_accumulation_steps`
    although the model's loss is a plain mean; `None` when the run scales it right.

    `trainer` (when known) settles what the model cannot tell: a `compute_loss_func` or a subclass's
    `loss_is_scaled_for_ga` takes the loss out of the model's hands.
    """
    steps = args.gradient_accumulation_steps
    if steps <= 1 or args.label_smoothing_factor != 0 or model is None:
        return None  # the label smoother divides by `num_items_in_batch` itself
    if trainer is not None and (
        not getattr(trainer, "model_accepts_loss_kwargs", True)
        or getattr(trainer, "compute_loss_func", None) is not None
        or getattr(trainer, "loss_is_scaled_for_ga", None) is not None
    ):
        return None
    inner = unwrap_model(model)
    if is_peft_model(inner):
        inner = inner.get_base_model()
    if not drops_loss_kwargs(inner):
        return None
    name = type(inner).__name__
    return (
        f"{name}.forward takes **kwargs but its loss ignores num_items_in_batch, so the Trainer will not divide "
        f"it by gradient_accumulation_steps={steps}: the loss, its gradients and the logged loss / train_loss come "
        f"out {steps}x too large ({UPSTREAM_ISSUE}). Set `model.accepts_loss_kwargs = False` before building "
        "the Trainer to train on the mean over the accumulated batch."
    )
