"""Turning K members' outputs into one prediction.

Member outputs arrive stacked on the CPU as one tensor with the member on dimension 0 (class logits
``[K, N, C]``, predictions ``[K, N]``, or a causal LM's target-token log-probabilities ``[K, T]``); the task kind
(`tasks`) says how they combine and what loss fitted weights minimise. This module checks the method and the
weights, which are the same for every kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .combined import Combined
from .tasks import task_kind

if TYPE_CHECKING:
    from .tasks.base import TaskKind


def normalize_weights(weights: Sequence[float] | torch.Tensor | None, num_members: int) -> torch.Tensor:
    """Non-negative weights summing to 1 (uniform when `weights` is None), as float64."""
    if weights is None:
        return torch.full((num_members,), 1.0 / num_members, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.numel() != num_members:
        raise ValueError(f"weights must have one entry per member ({num_members}); got {w.numel()}")
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0; got {w.tolist()}")
    return w / w.sum()


def combine(
    outputs: torch.Tensor,
    kind: str | TaskKind,
    method: str = "average",
    weights: Sequence[float] | torch.Tensor | None = None,
) -> Combined:
    """Combine stacked member outputs (see the module docstring) with `method`, as `kind` combines them.

    `weights` is required by `weighted` and refused by the other methods (which are uniform).
    """
    kind = task_kind(kind)
    kind.check_method(method)
    if (method == "weighted") != (weights is not None):
        raise ValueError("weights are required by method='weighted' and only by it")
    return kind.combine(outputs, method, normalize_weights(weights, outputs.shape[0]))


#: Fitted weights below this share of the largest are set to 0 (see `fit_weights`).
NEGLIGIBLE_WEIGHT = 1e-3


def fit_weights(
    outputs: torch.Tensor, labels: torch.Tensor | None, kind: str | TaskKind, steps: int = 200
) -> list[float]:
    """Member weights on the simplex minimising the mixture's loss on a validation split.

    Class scores and causal LM minimise the negative log-likelihood of the probability mixture; regression
    the squared error of the weighted mean (`TaskKind.weight_loss`). Deterministic (L-BFGS from uniform weights).
    A member whose weight comes out under `NEGLIGIBLE_WEIGHT` of the largest is dropped (weight 0, the rest
    renormalised): the softmax never reaches 0, and a member kept for 1e-7 of the mixture would cost a forward pass
    for nothing.
    """
    kind = task_kind(kind)
    if kind.needs_labels and labels is None:
        raise ValueError("fitting weights needs labels on the validation split")
    weight_loss = kind.weight_loss(outputs, labels)
    logits = torch.zeros(outputs.shape[0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([logits], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = weight_loss(logits.log_softmax(dim=0))
        value.backward()
        return value

    optimizer.step(loss)
    weights = logits.detach().softmax(dim=0)
    weights = torch.where(weights < NEGLIGIBLE_WEIGHT * weights.max(), torch.zeros_like(weights), weights)
    return [float(x) for x in weights / weights.sum()]
