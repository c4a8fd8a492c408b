"""Temperature scaling (Guo et al., ICML 2017): one scalar `T` per model, fitted on a selection split.

`softmax(logits / T)` keeps every argmax (accuracy is unchanged) and only sharpens or flattens the
probabilities, so it separates what an ensemble gains in calibration from what one member could get by
rescaling alone ("temperature-calibrated NLL", Ashukha et al., ICLR 2020). For an ensemble the logits are
the log of its averaged probabilities.

A causal LM's members keep only the target token's log-probability (never the vocabulary), so its temperature
is chosen on a fixed grid instead: every member's target log-probability is computed at each temperature of
`LM_TEMPERATURE_GRID` in the same forward pass, and the grid point with the lowest selection NLL is taken.
The grid's steps (4.4 % apart) cost at most a few 1e-4 nats against the continuous optimum; its price is 65
log-sum-exps over the vocabulary per target token, which for a tiny model with a large vocabulary costs more than
the forward pass itself (opt-in: `temperature_scaling=True`).
"""

from __future__ import annotations

import torch

#: Bounds of the fitted temperature (a wider range only chases numerical noise).
TEMPERATURE_RANGE = (0.05, 20.0)


#: Temperatures tried for a causal LM: 65 points log-spaced over 0.25-4 (4 ** (i / 32 - 1)), 1.0 among them.
LM_TEMPERATURE_GRID: tuple[float, ...] = tuple(4.0 ** (i / 32 - 1) for i in range(65))


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


def tempered_target_log_probs(
    logits: torch.Tensor, targets: torch.Tensor, temperatures: tuple[float, ...]
) -> torch.Tensor:
    """`log softmax(logits / T)[target]` for every T in `temperatures`: [..., len(temperatures)].

    `logits` [..., V] and `targets` [...] (valid class indices). T = 1.0 gives exactly the untempered value.
    """
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    columns = [
        picked - logits.logsumexp(dim=-1) if t == 1.0 else picked / t - (logits / t).logsumexp(dim=-1)
        for t in temperatures
    ]
    return torch.stack(columns, dim=-1)


def grid_temperature_index(log_likelihoods: torch.Tensor) -> int:
    """The grid column of `log_likelihoods` [N, G] with the lowest mean NLL (the first, on a tie)."""
    return int((-log_likelihoods.double().mean(dim=0)).argmin())
