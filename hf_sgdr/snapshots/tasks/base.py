"""`TaskKind`: what one kind of model outputs means, for collecting, combining and scoring them.

Layer 6 asks the kind instead of testing its name: a member's compact outputs of a batch, the labels they are
scored against, how K members' outputs combine into one `Combined`, the loss that fitted member weights
minimise, and what temperature scaling, diversity and external metrics make of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ..combined import Combined
from ..transfer import to_device
from .registry import KindFacts

#: Fits one temperature on the selection split for the members at these indices combined by a method, and
#: returns it with the combined output on the eval split at that temperature.
ScaleFit = Callable[[list[int], str], tuple[float, Combined]]


class TaskKind:
    """One kind of outputs; the facts it shares with the command line come from the registry (`facts`)."""

    #: Whether scoring needs the data's labels (a causal LM predicts its own input ids).
    needs_labels = True
    #: Whether `evaluate` modules and `compute_metrics` functions can score it (`trainer_predictions`).
    external_metrics = False
    #: Whether `temperature_fit` applies.
    scales_temperature = False
    #: The members' outputs are collected at these temperatures for temperature scaling (None: at T = 1 only).
    scaling_temperatures: tuple[float, ...] | None = None
    #: The range a fitted temperature lies in (one at a bound is no optimum).
    temperature_range: tuple[float, float]
    #: How a temperature-scaled ensemble row says what was scaled.
    tempered_ensembles = "temperature-scaled"

    def __init__(self, facts: KindFacts) -> None:
        self.facts = facts

    @property
    def name(self) -> str:
        """The kind's name, as the manifest's readers and the reports write it."""
        return self.facts.name

    @property
    def methods(self) -> tuple[str, ...]:
        """How member outputs may be combined; the first is the default."""
        return self.facts.methods

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def check_method(self, method: str) -> str:
        """`method` if it applies to this kind, else a `ValueError` listing the accepted ones."""
        if method not in self.methods:
            raise ValueError(f"method must be one of {', '.join(self.methods)} for {self.name}; got {method!r}")
        return method

    def batch_outputs(
        self,
        logits: torch.Tensor,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor | None,
        temperatures: tuple[float, ...] | None,
    ) -> torch.Tensor:
        """A member's compact outputs of one batch (on the model's device), from its logits."""
        raise NotImplementedError

    def targets(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """What the outputs are scored against, from every example's labels (`Batches.example_labels`)."""
        return labels

    def combine(self, outputs: torch.Tensor, method: str, weights: torch.Tensor) -> Combined:
        """Stacked member outputs ``[K, ...]`` combined by a checked `method` with normalised float64 `weights`."""
        raise NotImplementedError

    def weight_loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The validation loss of member log-weights ``[K]`` that `combine.fit_weights` minimises."""
        raise NotImplementedError

    def disagreement(self, member_outputs: torch.Tensor) -> float | None:
        """Mean pairwise rate at which members predict different things (None: not defined for this kind)."""
        return None

    def trainer_predictions(self, combined: Combined) -> torch.Tensor:
        """`EvalPrediction.predictions` for a `compute_metrics` function (with `external_metrics`)."""
        raise NotImplementedError

    def temperature_fit(self, outputs: Sequence[torch.Tensor], selection_labels: torch.Tensor | None) -> ScaleFit:
        """With `scales_temperature`: the fit of one temperature per row, from the (eval, selection) outputs
        collected at `scaling_temperatures`."""
        raise NotImplementedError


def mixture_nll(log_likelihoods: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The NLL of the members' probability mixture, from each member's log-likelihood of each item ``[K, N]``."""

    def loss(log_weights: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(log_likelihoods + log_weights.view(-1, 1), dim=0).mean()

    return loss


def masked_rows(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`values[mask]` for a `mask` [B, L] on the CPU and `values` [B, L, ...] on any device, without a device sync.

    Boolean indexing on an accelerator makes the host wait for the device to count the rows, once per batch: the
    next batch's forward could not be queued meanwhile. The rows' positions are counted on the CPU instead.
    """
    if mask.shape != values.shape[:2]:
        raise ValueError(
            f"a mask of shape {tuple(mask.shape)} cannot select rows of values shaped {tuple(values.shape)}"
        )
    positions = to_device(mask.reshape(-1).nonzero().squeeze(1), values.device)
    return values.flatten(0, 1).index_select(0, positions)
