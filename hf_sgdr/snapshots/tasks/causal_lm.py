"""Causal LM: each member keeps only ``log p_k(target)`` of every predicted token ``[T]``, never the vocabulary.

Averaging the members' *probabilities* of the target token gives the ensemble's likelihood
``log p(t) = logsumexp_k(log p_k(t) + log w_k)``; its perplexity is not the mean of the members' perplexities.
Temperature scaling picks a point of `calibration.LM_TEMPERATURE_GRID`, at which every target log-probability
was computed in the same forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

from ..calibration import LM_TEMPERATURE_GRID, grid_temperature_index, tempered_target_log_probs
from ..combined import Combined
from ..outputs import IGNORE_INDEX
from ..transfer import to_device
from .base import ScaleFit, TaskKind, masked_rows, mixture_nll
from .registry import kind_facts


class CausalLM(TaskKind):
    """Target-token log-probabilities ``[T]`` (``[T, G]`` at G temperatures) per member."""

    needs_labels = False
    scales_temperature = True
    scaling_temperatures = LM_TEMPERATURE_GRID
    temperature_range = (LM_TEMPERATURE_GRID[0], LM_TEMPERATURE_GRID[-1])
    tempered_ensembles = "members temperature-scaled"

    def batch_outputs(
        self,
        logits: torch.Tensor,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor | None,
        temperatures: tuple[float, ...] | None,
    ) -> torch.Tensor:
        return target_log_probs(logits, labels if labels is not None else _lm_targets(inputs), temperatures)

    def combine(self, outputs: torch.Tensor, method: str, weights: torch.Tensor) -> Combined:
        """The mixture's log-likelihood of every target token (also the predictions the LM metrics take)."""
        log_likelihood = torch.logsumexp(outputs.double() + weights.log().view(-1, 1), dim=0)
        return Combined(log_likelihood, log_likelihood)

    def weight_loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The NLL of the mixture of the members' token probabilities."""
        return mixture_nll(outputs.double())

    def temperature_fit(self, outputs: Sequence[torch.Tensor], selection_labels: torch.Tensor | None) -> ScaleFit:
        """The grid temperature whose mixture of members tempered alike has the lowest selection NLL."""
        eval_grid, selection_grid = outputs

        def fit(members: list[int], how: str) -> tuple[float, Combined]:
            def mixture(grid: torch.Tensor) -> torch.Tensor:
                return torch.logsumexp(grid[members].double(), dim=0) - math.log(len(members))

            index = grid_temperature_index(mixture(selection_grid))
            log_likelihood = mixture(eval_grid)[:, index].contiguous()
            return LM_TEMPERATURE_GRID[index], Combined(log_likelihood, log_likelihood)

        return fit


def target_log_probs(
    logits: torch.Tensor, labels: torch.Tensor, temperatures: tuple[float, ...] | None = None
) -> torch.Tensor:
    """log p(next token) at every position whose label is not -100, flattened (causal shift applied): [T], or
    [T, len(temperatures)] with the distribution tempered by each of `temperatures`."""
    logits = logits[:, :-1].float()
    targets = labels[:, 1:].cpu()
    tempered = tempered_target_log_probs(logits, to_device(targets.clamp(min=0), logits.device), temperatures or (1.0,))
    picked = masked_rows(tempered, targets != IGNORE_INDEX)
    return picked if temperatures is not None else picked[..., 0]


def _lm_targets(inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Without labels, a causal LM predicts its own input ids (padding excluded)."""
    mask = inputs.get("attention_mask")
    return inputs["input_ids"] if mask is None else inputs["input_ids"].masked_fill(mask == 0, IGNORE_INDEX)


CAUSAL_LM = CausalLM(kind_facts("causal_lm"))
