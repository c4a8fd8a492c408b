"""Temperature scaling (Guo et al., ICML 2017): one scalar `T` per model, fitted on a selection split.

`softmax(logits / T)` keeps every argmax (accuracy is unchanged) and only sharpens or flattens the
probabilities, so it separates what an ensemble gains in calibration from what one member could get by
rescaling alone ("temperature-calibrated NLL", Ashukha et al., ICLR 2020). For an ensemble the logits are
the log of its averaged probabilities.
"""

from __future__ import annotations

import torch

#: Bounds of the fitted temperature (a wider range only chases numerical noise).
TEMPERATURE_RANGE = (0.05, 20.0)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The `T` in `TEMPERATURE_RANGE` that minimises the NLL of `softmax(logits / T)` on these labels.

    One-dimensional and convex in `log T`: a deterministic golden-section search.
    """
    logits, labels = logits.double(), labels.long()

    def loss(log_t: float) -> float:
        scaled = logits / torch.exp(torch.tensor(log_t, dtype=torch.float64))
        return float(torch.nn.functional.cross_entropy(scaled, labels))

    low, high = (float(torch.log(torch.tensor(bound))) for bound in TEMPERATURE_RANGE)
    ratio = (5**0.5 - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(torch.exp(torch.tensor((low + high) / 2)))


def scaled_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """`softmax(logits / temperature)` in float64."""
    return (logits.double() / temperature).softmax(dim=-1)
