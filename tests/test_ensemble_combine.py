"""Each combination method against a combination computed by hand, and the selection algorithms."""

from __future__ import annotations

import math

import pytest
import torch

from hf_sgdr.snapshots.combine import combine, fit_weights, normalize_weights
from hf_sgdr.snapshots.metrics import METHODS
from hf_sgdr.snapshots.soups import greedy_ensemble_selection, greedy_soup, rank_members

# Three members, two examples, three classes.
LOGITS = torch.tensor(
    [
        [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        [[0.0, 3.0, 0.0], [0.0, 0.0, 2.0]],
        [[1.0, 1.5, 0.0], [0.0, 2.0, 0.0]],
    ]
)


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(x) for x in row]
    return [e / sum(exps) for e in exps]


def test_average_is_the_mean_of_probabilities() -> None:
    out = combine(LOGITS, "classification", "average")
    for n in range(2):
        expected = [sum(_softmax(LOGITS[k, n].tolist())[c] for k in range(3)) / 3 for c in range(3)]
        assert out.scores[n].tolist() == pytest.approx(expected, abs=1e-12)
    assert out.predictions.tolist() == [1, 1]  # example 0: mean probabilities favour class 1 although member 0 says 0


def test_logits_is_the_mean_of_logits() -> None:
    out = combine(LOGITS, "classification", "logits")
    torch.testing.assert_close(out.scores, torch.tensor([[1.0, 1.5, 0.0], [0.0, 1.0, 2 / 3]], dtype=torch.float64))
    assert out.predictions.tolist() == [1, 1]


def test_vote_counts_argmaxes_and_breaks_ties_by_mean_probability() -> None:
    out = combine(LOGITS, "classification", "vote")
    torch.testing.assert_close(
        out.scores, torch.tensor([[1 / 3, 2 / 3, 0.0], [0.0, 2 / 3, 1 / 3]], dtype=torch.float64)
    )
    assert out.predictions.tolist() == [1, 1]
    tie = torch.tensor([[[3.0, 0.0]], [[0.0, 1.0]]])  # one vote each; member 0 is far more confident
    assert combine(tie, "classification", "vote").predictions.tolist() == [0]


def test_weighted_is_the_weighted_mean_of_probabilities() -> None:
    out = combine(LOGITS, "classification", "weighted", [1.0, 0.0, 3.0])
    for n in range(2):
        p0, p2 = _softmax(LOGITS[0, n].tolist()), _softmax(LOGITS[2, n].tolist())
        assert out.scores[n].tolist() == pytest.approx(
            [0.25 * a + 0.75 * b for a, b in zip(p0, p2, strict=True)], abs=1e-12
        )


def test_regression_mean_and_weighted_mean() -> None:
    values = torch.tensor([[1.0, 4.0], [3.0, 0.0]])
    assert combine(values, "regression").predictions.tolist() == pytest.approx([2.0, 2.0])
    assert combine(values, "regression", "weighted", [3, 1]).predictions.tolist() == pytest.approx([1.5, 3.0])


def test_causal_lm_mixes_token_probabilities_not_perplexities() -> None:
    log_p = torch.log(torch.tensor([[0.5, 0.1, 0.9], [0.1, 0.3, 0.5]], dtype=torch.float64))
    out = combine(log_p, "causal_lm")
    assert out.predictions.exp().tolist() == pytest.approx([0.3, 0.2, 0.7], abs=1e-12)
    ensemble_ppl = math.exp(-sum(math.log(p) for p in (0.3, 0.2, 0.7)) / 3)
    mean_member_ppl = sum(math.exp(-row.mean().item()) for row in log_p) / 2
    assert math.exp(-out.predictions.mean().item()) == pytest.approx(ensemble_ppl)
    assert abs(ensemble_ppl - mean_member_ppl) > 0.1
    weighted = combine(log_p, "causal_lm", "weighted", [0.25, 0.75])
    assert weighted.predictions.exp().tolist() == pytest.approx([0.2, 0.25, 0.6], abs=1e-12)


def test_methods_and_weights_are_validated() -> None:
    assert METHODS["regression"] == ("average", "weighted")
    with pytest.raises(ValueError, match="method must be one of average, weighted for regression; got 'vote'"):
        combine(torch.zeros(2, 3), "regression", "vote")
    with pytest.raises(ValueError, match="weights are required by method='weighted' and only by it"):
        combine(LOGITS, "classification", "weighted")
    with pytest.raises(ValueError, match="weights are required"):
        combine(LOGITS, "classification", "average", [1, 1, 1])
    with pytest.raises(ValueError, match=r"weights must have one entry per member \(3\); got 2"):
        combine(LOGITS, "classification", "weighted", [1, 1])
    with pytest.raises(ValueError, match="weights must be finite, >= 0 and not all 0"):
        normalize_weights([1, -1, 1], 3)


def test_fitted_weights_find_the_informative_member() -> None:
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (300,))
    good = torch.nn.functional.one_hot(labels, 2).float() * 4 - 2  # confident and right
    noise = torch.randn(2, 300, 2)  # uninformative
    weights = fit_weights(torch.stack([noise[0], good, noise[1]]), labels, "classification")
    # The noise members' weights (about 1e-7 from the softmax) are dropped: no forward pass kept for nothing.
    assert weights == [0.0, 1.0, 0.0]
    values = torch.stack([labels.float() + 0.5, labels.float(), labels.float() + 1.0])
    assert fit_weights(values, labels, "regression")[1] > 0.95
    log_p = torch.stack([torch.full((50,), math.log(0.9)), torch.full((50,), math.log(0.1))])
    assert fit_weights(log_p, None, "causal_lm") == [1.0, 0.0]
    # 1001 alike members each get about 1/1001, under 0.1 % but not of the largest: all are kept.
    alike = fit_weights(torch.stack([good] * 1001), labels, "classification")
    assert len(alike) == 1001 and all(w == pytest.approx(1 / 1001) for w in alike)


def test_greedy_soup_keeps_ingredients_that_do_not_hurt() -> None:
    scores = {(0,): 0.6, (1,): 0.8, (2,): 0.7, (1, 2): 0.85, (0, 1, 2): 0.5}
    calls = []

    def soup_score(indices: list[int]) -> float:
        calls.append(sorted(indices))
        return scores[tuple(sorted(indices))]

    chosen, score = greedy_soup([0.6, 0.8, 0.7], soup_score, "accuracy")
    assert (chosen, score) == ([1, 2], 0.85)
    assert calls == [[1, 2], [0, 1, 2]]  # ranked by their own score: 1, then 2, then 0
    assert rank_members([3.0, 1.0, 2.0], "perplexity") == [1, 2, 0]


def test_greedy_ensemble_selection_with_replacement() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    # Member 0 gets examples 0-2 right, member 1 gets 1-3 right, member 2 is always wrong but confident.
    logits = torch.tensor(
        [
            [[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [1.0, 0.0]],
            [[0.0, 1.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]],
            [[0.0, 9.0], [0.0, 9.0], [9.0, 0.0], [9.0, 0.0]],
        ]
    )
    weights, score = greedy_ensemble_selection(logits, labels, "classification", "accuracy")
    assert score == 1.0 and weights[2] == 0.0
    assert weights[0] > 0 and weights[1] > 0 and sum(weights) == pytest.approx(1.0)
    assert combine(logits, "classification", "weighted", weights).predictions.tolist() == [0, 0, 1, 1]
