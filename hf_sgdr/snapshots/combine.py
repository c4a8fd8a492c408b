"""Turning K members' outputs into one prediction.

Member outputs arrive stacked on the CPU as one tensor with the member on dimension 0:

- classification: logits ``[K, N, C]``;
- regression: predictions ``[K, N]`` (STS-B style, one number per example);
- causal LM: ``log p_k(target)`` of every predicted token, ``[K, T]``. Averaging the members'
  *probabilities* of the target token gives the ensemble's likelihood
  ``log p(t) = logsumexp_k(log p_k(t) + log w_k)``; its perplexity is not the mean of the members'
  perplexities. Only the target token's probability is needed, never the full vocabulary distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .metrics import CLASS_KINDS, METHODS, TASK_KINDS, compute_metrics


@dataclass
class Combined:
    """The ensemble's output for one method.

    `scores`: class probabilities (`average`, `weighted`), mean logits (`logits`) or vote fractions
    (`vote`) ``[N, C]``; the mean prediction ``[N]`` (regression); the ensemble's log-likelihood of each
    target token ``[T]`` (causal LM). `predictions`: class ids or values ``[N]``; for a causal LM the
    token log-likelihoods again, which is what the LM metrics take. `probabilities`: classification only,
    the ensemble's class distribution ``[N, C]`` that the probability metrics score (the softmax of the mean
    logits for `logits`, the vote fractions for `vote`).
    """

    scores: torch.Tensor
    predictions: torch.Tensor
    probabilities: torch.Tensor | None = None

    def metrics(self, names: Sequence[str], labels: torch.Tensor | None) -> dict[str, float]:
        """The named metrics of this output against `labels` (None for a causal LM)."""
        probabilities = None if self.probabilities is None else self.probabilities.numpy()
        return compute_metrics(
            names, self.predictions.numpy(), None if labels is None else labels.numpy(), probabilities
        )


def check_method(kind: str, method: str) -> str:
    """`method` if it applies to `kind`, else a `ValueError` listing the accepted ones."""
    if kind not in TASK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(TASK_KINDS)}; got {kind!r}")
    if method not in METHODS[kind]:
        raise ValueError(f"method must be one of {', '.join(METHODS[kind])} for {kind}; got {method!r}")
    return method


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
    outputs: torch.Tensor, kind: str, method: str = "average", weights: Sequence[float] | torch.Tensor | None = None
) -> Combined:
    """Combine stacked member outputs (see the module docstring) with `method`.

    `weights` is required by `weighted` and refused by the other methods (which are uniform).
    """
    check_method(kind, method)
    if (method == "weighted") != (weights is not None):
        raise ValueError("weights are required by method='weighted' and only by it")
    w = normalize_weights(weights, outputs.shape[0])
    if kind == "causal_lm":
        log_likelihood = torch.logsumexp(outputs.double() + w.log().view(-1, 1), dim=0)
        return Combined(log_likelihood, log_likelihood)
    if kind == "regression":
        mean = torch.einsum("k,kn->n", w, outputs.double())
        return Combined(mean, mean)
    if method == "logits":
        scores = outputs.double().mean(dim=0)
    elif method == "vote":
        votes = torch.nn.functional.one_hot(outputs.argmax(dim=-1), outputs.shape[-1]).double().mean(dim=0)
        # Ties between classes with equally many votes go to the class with the higher mean probability.
        tie_break = outputs.double().softmax(dim=-1).mean(dim=0) / (outputs.shape[0] + 1)
        return Combined(votes, (votes + tie_break).argmax(dim=-1), votes)
    else:
        scores = torch.einsum("k,knc->nc", w, outputs.double().softmax(dim=-1))
        return Combined(scores, scores.argmax(dim=-1), scores)
    return Combined(scores, scores.argmax(dim=-1), scores.softmax(dim=-1))


def fit_weights(outputs: torch.Tensor, labels: torch.Tensor | None, kind: str, steps: int = 200) -> list[float]:
    """Member weights on the simplex minimising the mixture's loss on a validation split.

    Classification and causal LM minimise the negative log-likelihood of the probability mixture; regression
    the squared error of the weighted mean. Deterministic (L-BFGS from uniform weights).
    """
    if kind not in TASK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(TASK_KINDS)}; got {kind!r}")
    if kind != "causal_lm" and labels is None:
        raise ValueError("fitting weights needs labels on the validation split")
    values = outputs.double()
    if kind in CLASS_KINDS:
        values = values.log_softmax(dim=-1).gather(-1, labels.long().view(1, -1, 1).expand(values.shape[0], -1, 1))
        values = values.squeeze(-1)
    logits = torch.zeros(outputs.shape[0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([logits], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        log_w = logits.log_softmax(dim=0)
        if kind == "regression":
            value = ((torch.einsum("k,kn->n", log_w.exp(), values) - labels.double()) ** 2).mean()
        else:
            value = -torch.logsumexp(values + log_w.view(-1, 1), dim=0).mean()
        value.backward()
        return value

    optimizer.step(loss)
    weights = logits.detach().softmax(dim=0)
    return [float(x) for x in weights]
