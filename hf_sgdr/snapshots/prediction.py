"""`EnsemblePrediction`: what `SnapshotEnsemble.predict` returns, and the metrics of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .combined import Combined
from .metric_suite import MetricSpec, MetricSuite
from .metrics import METRICS, compute_metrics


@dataclass
class EnsemblePrediction:
    """The ensemble's output on one dataloader (see `combine.Combined` for what `scores` holds)."""

    kind: str
    task: str | None
    method: str
    members: list[str]
    weights: list[float]
    scores: torch.Tensor
    predictions: torch.Tensor
    labels: torch.Tensor | None
    member_outputs: torch.Tensor
    probabilities: torch.Tensor | None = None

    def metrics(self, names: MetricSpec | Sequence[MetricSpec] | None = None) -> dict[str, float]:
        """Task metrics of the ensemble (default: the task's; labels needed except for a causal LM).

        `names`: built-in metric names, an `evaluate` module or a `compute_metrics` function (see `metric_suite`).
        """
        suite = MetricSuite(self.kind, self.task, names)
        if suite.kind.needs_labels and self.labels is None:
            raise ValueError("metrics need labels: the dataloader had no 'labels' or 'label' column")
        return suite.compute(Combined(self.scores, self.predictions, self.probabilities), self.labels)

    @property
    def perplexity(self) -> float:
        """Causal LM only: exp(mean NLL) of the probability-averaged ensemble."""
        if not METRICS["perplexity"].applies_to(self.kind):
            raise ValueError(f"perplexity applies to causal_lm predictions; these are {self.kind}")
        return compute_metrics(["perplexity"], self.predictions.numpy(), None)["perplexity"]
