"""Class scores: one score per class of each example (classification), of each choice set (multiple choice), or
of each labelled token (token classification, whose outputs are flattened so that a token is an example)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ..calibration import TEMPERATURE_RANGE, fit_temperature, scaled_probabilities
from ..combine import combine
from ..combined import Combined
from ..outputs import IGNORE_INDEX
from .base import ScaleFit, TaskKind, masked_rows, mixture_nll
from .registry import kind_facts


class ClassScores(TaskKind):
    """Logits ``[N, C]`` per member; combined as probabilities, logits or votes."""

    external_metrics = True
    scales_temperature = True
    temperature_range = TEMPERATURE_RANGE

    def batch_outputs(
        self,
        logits: torch.Tensor,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor | None,
        temperatures: tuple[float, ...] | None,
    ) -> torch.Tensor:
        return logits.float()

    def combine(self, outputs: torch.Tensor, method: str, weights: torch.Tensor) -> Combined:
        """`average`/`weighted`: the (weighted) mean of the probabilities; `logits`: the softmax of the mean logits;
        `vote`: the vote fractions, ties to the class with the higher mean probability."""
        if method == "logits":
            scores = outputs.double().mean(dim=0)
            return Combined(scores, scores.argmax(dim=-1), scores.softmax(dim=-1))
        if method == "vote":
            votes = torch.nn.functional.one_hot(outputs.argmax(dim=-1), outputs.shape[-1]).double().mean(dim=0)
            tie_break = outputs.double().softmax(dim=-1).mean(dim=0) / (outputs.shape[0] + 1)
            return Combined(votes, (votes + tie_break).argmax(dim=-1), votes)
        scores = torch.einsum("k,knc->nc", weights, outputs.double().softmax(dim=-1))
        return Combined(scores, scores.argmax(dim=-1), scores)

    def weight_loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The NLL of the probability mixture on the labels."""
        values = outputs.double().log_softmax(dim=-1)
        picked = values.gather(-1, labels.long().view(1, -1, 1).expand(values.shape[0], -1, 1)).squeeze(-1)
        return mixture_nll(picked)

    def disagreement(self, member_outputs: torch.Tensor) -> float:
        """How often two members' predicted classes differ, averaged over the pairs."""
        classes = member_outputs.argmax(dim=-1)
        pairs = [
            float((classes[i] != classes[j]).double().mean())
            for i in range(len(classes))
            for j in range(i + 1, len(classes))
        ]
        return sum(pairs) / len(pairs)

    def trainer_predictions(self, combined: Combined) -> torch.Tensor:
        """The log of the ensemble's class distribution: argmax is the class, softmax the distribution."""
        return _log_probabilities(combined)

    def temperature_fit(self, outputs: Sequence[torch.Tensor], selection_labels: torch.Tensor | None) -> ScaleFit:
        """The temperature of the log of the combined class distribution, by golden-section search."""
        eval_out, selection_out = outputs

        def fit(members: list[int], how: str) -> tuple[float, Combined]:
            temperature = fit_temperature(
                _log_probabilities(combine(selection_out[members], self, how)), selection_labels
            )
            reported = combine(eval_out[members], self, how)
            probabilities = scaled_probabilities(_log_probabilities(reported), temperature)
            return temperature, Combined(probabilities, probabilities.argmax(dim=-1), probabilities)

        return fit


class TokenScores(ClassScores):
    """Token classification: the logits of every token that has a label (not -100) are the examples."""

    def batch_outputs(
        self,
        logits: torch.Tensor,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor | None,
        temperatures: tuple[float, ...] | None,
    ) -> torch.Tensor:
        return masked_rows(logits, _token_mask(inputs, labels).cpu()).float()

    def targets(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The label of every token that has one, flattened in the order `batch_outputs` keeps the tokens."""
        return None if labels is None else labels[labels != IGNORE_INDEX]


def _token_mask(inputs: Mapping[str, torch.Tensor], labels: torch.Tensor | None) -> torch.Tensor:
    """The positions scored: those with a label other than -100 (without labels: the attention mask's tokens)."""
    if labels is not None:
        return labels != IGNORE_INDEX
    mask = inputs.get("attention_mask")
    return torch.ones_like(inputs["input_ids"], dtype=torch.bool) if mask is None else mask.bool()


def _log_probabilities(combined: Combined) -> torch.Tensor:
    """The log of an output's class distribution (the logits a temperature divides)."""
    assert combined.probabilities is not None
    return combined.probabilities.clamp_min(1e-15).log()


CLASSIFICATION = ClassScores(kind_facts("classification"))
MULTIPLE_CHOICE = ClassScores(kind_facts("multiple_choice"))
TOKEN_CLASSIFICATION = TokenScores(kind_facts("token_classification"))
