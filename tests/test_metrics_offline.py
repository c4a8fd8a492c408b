"""The offline task metrics against scikit-learn and scipy (the references `evaluate` wraps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from hf_sgdr.snapshots.metrics import (
    METRICS,
    accuracy,
    brier,
    compute_metrics,
    ece,
    f1,
    is_better,
    matthews_correlation,
    metric_names_for,
    mse,
    nll,
    pearson,
    perplexity,
    spearman,
)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_classification_metrics_match_sklearn(seed: int, num_classes: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, num_classes, 200))
    assert accuracy(predictions, labels) == pytest.approx(sk.accuracy_score(labels, predictions), abs=1e-12)
    average = "binary" if num_classes == 2 else "macro"
    assert f1(predictions, labels) == pytest.approx(sk.f1_score(labels, predictions, average=average), abs=1e-12)
    assert matthews_correlation(predictions, labels) == pytest.approx(
        sk.matthews_corrcoef(labels, predictions), abs=1e-12
    )


def test_degenerate_classification_cases_match_sklearn() -> None:
    labels = np.array([0, 0, 1, 1])
    constant = np.zeros(4, dtype=int)
    assert matthews_correlation(constant, labels) == 0.0 == sk.matthews_corrcoef(labels, constant)
    assert f1(constant, labels) == 0.0 == sk.f1_score(labels, constant, zero_division=0)
    assert matthews_correlation(labels, labels) == pytest.approx(1.0)
    assert matthews_correlation(1 - labels, labels) == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", range(5))
def test_regression_metrics_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.round(rng.uniform(0, 5, 150), 1)  # STS-B style scores, with ties
    predictions = labels + rng.normal(0, 1.0, 150)
    predictions[:20] = np.round(predictions[:20])  # ties in the predictions too
    assert pearson(predictions, labels) == pytest.approx(stats.pearsonr(predictions, labels)[0], abs=1e-12)
    assert spearman(predictions, labels) == pytest.approx(stats.spearmanr(predictions, labels)[0], abs=1e-12)
    assert mse(predictions, labels) == pytest.approx(sk.mean_squared_error(labels, predictions), abs=1e-12)


def test_perplexity_is_exp_of_mean_token_nll() -> None:
    log_probs = np.log(np.array([0.5, 0.25, 0.125, 0.125]))
    assert nll(log_probs) == pytest.approx(-np.mean(log_probs))
    assert perplexity(log_probs) == pytest.approx(math.exp(-np.mean(log_probs)))
    assert perplexity(np.log(np.full(7, 1 / 50))) == pytest.approx(50.0)


def test_metric_selection_by_task_and_kind() -> None:
    probability = ("nll", "brier", "ece")
    assert metric_names_for("classification", "sst2") == ("accuracy", *probability)
    assert metric_names_for("classification", "cola") == ("matthews_correlation", *probability)
    assert metric_names_for("classification", "mrpc") == ("f1", "accuracy", *probability)
    assert metric_names_for("regression", "stsb") == ("pearson", "spearman")
    assert metric_names_for("causal_lm", "wikitext") == ("perplexity", "nll")
    assert metric_names_for("classification", None) == ("accuracy", "f1", *probability)
    with pytest.raises(ValueError, match="unknown metric 'bleu'; accepted: accuracy"):
        metric_names_for("classification", names=["bleu"])
    with pytest.raises(ValueError, match="metric 'perplexity' does not apply to classification"):
        metric_names_for("classification", names=["perplexity"])
    with pytest.raises(ValueError, match="kind must be one of classification, regression, causal_lm"):
        metric_names_for("ner")


def test_compute_metrics_and_direction() -> None:
    result = compute_metrics(["accuracy", "f1"], np.array([1, 0, 1]), np.array([1, 1, 1]))
    assert result == {"accuracy": pytest.approx(2 / 3), "f1": pytest.approx(0.8)}
    assert is_better("accuracy", 0.9, 0.8) and not is_better("accuracy", 0.8, 0.8)
    assert is_better("accuracy", 0.8, 0.8, or_equal=True)
    assert is_better("perplexity", 10.0, 12.0) and not is_better("perplexity", 12.0, 10.0)
    assert not is_better("pearson", float("nan"), 0.1) and is_better("pearson", 0.1, float("nan"))
    assert {name for name, metric in METRICS.items() if not metric.higher_is_better} == {
        "mse",
        "perplexity",
        "nll",
        "brier",
        "ece",
    }


def _random_probabilities(seed: int, num_classes: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, num_classes)) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, num_classes, n)
    return probabilities, labels


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_probability_metrics_match_sklearn(seed: int, num_classes: int) -> None:
    probabilities, labels = _random_probabilities(seed, num_classes)
    classes = list(range(num_classes))
    assert nll(probabilities, labels) == pytest.approx(sk.log_loss(labels, probabilities, labels=classes), rel=1e-12)
    expected_brier = (
        sk.brier_score_loss(labels, probabilities[:, 1])
        if num_classes == 2
        else sk.brier_score_loss(labels, probabilities, labels=classes)
    )
    assert brier(probabilities, labels) == pytest.approx(expected_brier, rel=1e-12)
    # Computed through compute_metrics, as the ensembles do: the probabilities feed nll/brier/ece only.
    predictions = probabilities.argmax(axis=1)
    result = compute_metrics(["accuracy", "nll", "brier"], predictions, labels, probabilities)
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(labels, predictions))
    assert result["nll"] == pytest.approx(sk.log_loss(labels, probabilities, labels=classes), rel=1e-12)


def test_nll_clips_a_confidently_wrong_prediction() -> None:
    probabilities = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert nll(probabilities, np.array([1, 0])) == pytest.approx((-math.log(1e-15) - math.log(0.5)) / 2)


def test_ece_by_hand() -> None:
    # Confidences 0.95, 0.95 (bin 15: one right, one wrong), 0.6 (bin 9: right), 0.55 (bin 9: wrong).
    probabilities = np.array([[0.95, 0.05], [0.05, 0.95], [0.6, 0.4], [0.45, 0.55]])
    labels = np.array([0, 0, 0, 0])
    top = abs(0.5 - 0.95) * 2 / 4
    middle = abs(0.5 - (0.6 + 0.55) / 2) * 2 / 4
    assert ece(probabilities, labels) == pytest.approx(top + middle, abs=1e-12)
    # A bin's upper edge is inside it: confidence exactly 2/3 falls in bin 10 ((9/15, 10/15]), with 0.61.
    edge = np.array([[2 / 3, 1 / 3], [0.61, 0.39]])
    assert ece(edge, np.array([0, 1])) == pytest.approx(abs(0.5 - (2 / 3 + 0.61) / 2), abs=1e-12)
    assert ece(np.array([[0.8, 0.2]] * 5), np.array([0, 0, 0, 0, 1])) == pytest.approx(0.0, abs=1e-12)


def test_probability_metrics_refuse_class_ids_alone() -> None:
    with pytest.raises(ValueError, match="metric 'nll' scores class probabilities"):
        compute_metrics(["nll"], np.array([1, 0]), np.array([1, 1]))
