"""Regression: one number per example (STS-B style), combined as the (weighted) mean prediction."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ..combined import Combined
from .base import TaskKind
from .registry import kind_facts


class Regression(TaskKind):
    """Predictions ``[N]`` per member."""

    external_metrics = True

    def batch_outputs(
        self,
        logits: torch.Tensor,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor | None,
        temperatures: tuple[float, ...] | None,
    ) -> torch.Tensor:
        return logits.reshape(logits.shape[0]).float()

    def combine(self, outputs: torch.Tensor, method: str, weights: torch.Tensor) -> Combined:
        mean = torch.einsum("k,kn->n", weights, outputs.double())
        return Combined(mean, mean)

    def weight_loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The squared error of the weighted mean prediction."""
        values, targets = outputs.double(), labels.double()

        def loss(log_weights: torch.Tensor) -> torch.Tensor:
            return ((torch.einsum("k,kn->n", log_weights.exp(), values) - targets) ** 2).mean()

        return loss

    def trainer_predictions(self, combined: Combined) -> torch.Tensor:
        """The mean prediction ``[N]``."""
        return combined.predictions


REGRESSION = Regression(kind_facts("regression"))
