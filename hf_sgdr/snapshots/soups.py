"""Choosing members on a validation split: greedy weight soup and greedy ensemble selection.

- Greedy soup (Wortsman et al., "Model soups", ICML 2022): rank the snapshots by their own validation
  score, start from the best, and add each next one to the parameter average only if the soup's validation
  score does not drop. One model at inference.
- Greedy ensemble selection (Caruana et al., ICML 2004): forward selection *with replacement* of members
  whose averaged predictions maximise the validation score; the multiplicities become mixture weights.

Both take a scoring function, so they never see the split that is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from .combine import combine
from .combined import Combined
from .metrics import higher_is_better, is_better

if TYPE_CHECKING:
    from .tasks.base import TaskKind


def rank_members(scores: Sequence[float], metric: str) -> list[int]:
    """Member indices from best to worst by `metric` (stable: ties keep the earlier member first)."""
    sign = -1.0 if higher_is_better(metric) else 1.0
    return sorted(range(len(scores)), key=lambda i: sign * scores[i])


def greedy_soup(
    member_scores: Sequence[float], soup_score: Callable[[list[int]], float], metric: str
) -> tuple[list[int], float]:
    """Ingredients (member indices) of the greedy soup and its validation score.

    `member_scores[i]` is member i's own validation score; `soup_score(indices)` scores the uniform soup.
    """
    order = rank_members(member_scores, metric)
    chosen, best = [order[0]], member_scores[order[0]]
    for index in order[1:]:
        candidate = [*chosen, index]
        value = soup_score(candidate)
        if is_better(metric, value, best, or_equal=True):
            chosen, best = candidate, value
    return sorted(chosen), best


def greedy_ensemble_selection(
    outputs: torch.Tensor,
    labels: torch.Tensor | None,
    kind: str | TaskKind,
    metric: str,
    max_rounds: int | None = None,
    *,
    scorer: Callable[[Combined], float] | None = None,
) -> tuple[list[float], float]:
    """Mixture weights (multiplicity / rounds) chosen on validation outputs, and the validation score.

    Starts from the best single member; each round adds the member (repeats allowed) that improves the
    score most; stops when no member improves it or after `max_rounds` (default 2K) additions. `scorer`
    (default: the built-in `metric` against `labels`) scores a combined output.
    """
    num_members = outputs.shape[0]
    max_rounds = 2 * num_members if max_rounds is None else max_rounds
    scorer = scorer or (lambda combined: combined.metrics([metric], labels)[metric])

    def score(counts: list[int]) -> float:
        return scorer(combine(outputs, kind, "weighted", counts))

    counts = [0] * num_members
    singles = [score([int(i == k) for i in range(num_members)]) for k in range(num_members)]
    first = rank_members(singles, metric)[0]
    counts[first], best = 1, singles[first]
    for _ in range(max_rounds - 1):
        trials = [score([c + (i == k) for i, c in enumerate(counts)]) for k in range(num_members)]
        pick = rank_members(trials, metric)[0]
        if not is_better(metric, trials[pick], best):
            break
        counts[pick] += 1
        best = trials[pick]
    total = sum(counts)
    return [c / total for c in counts], best
