"""`Combined`: the ensemble's output for one method, scored by the metrics.

Its own module so that the task kinds, which make it, and `combine`, which asks them, import it without a
circle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .metrics import compute_metrics


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
