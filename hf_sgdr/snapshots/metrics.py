"""Task metrics computed locally (no `evaluate.load`, which fetches metric scripts from the Hub at run time).

Each metric is a small numpy function checked against scikit-learn / scipy in the tests. GLUE tasks get
their official metrics (`GLUE_METRICS`); other tasks get a default per kind of output (`DEFAULT_METRICS`).
The first metric of a task is its primary one: greedy soups and greedy selection maximise it (or minimise
it, for perplexity) unless another selection metric is named.

Classification is also scored on its probabilities (`PROBABILITY_METRICS`: negative log-likelihood,
Brier score, expected calibration error), which is where ensembles gain first (Ashukha et al., ICLR 2020):
two models with the same argmax accuracy can differ a lot in how much probability they put on the truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .tasks.registry import (
    CLASS_SCORES,
    PROBABILITY_METRICS,
    TOKEN_LOG_LIKELIHOODS,
    VALUES,
    FactTable,
    KindObject,
    kind_facts,
    kind_names,
)

#: How the members' outputs of each kind may be combined (`combine.combine`); the first is the default. Read
#: from the torch-free kind registry, so that a command line can offer them without importing torch.
METHODS: Mapping[str, tuple[str, ...]] = FactTable("methods")

#: Equal-width confidence bins of the expected calibration error (Guo et al., ICML 2017).
ECE_BINS = 15

GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_correlation", *PROBABILITY_METRICS),
    "sst2": ("accuracy", *PROBABILITY_METRICS),
    "mrpc": ("f1", "accuracy", *PROBABILITY_METRICS),
    "qqp": ("f1", "accuracy", *PROBABILITY_METRICS),
    "stsb": ("pearson", "spearman"),
    "mnli": ("accuracy", *PROBABILITY_METRICS),
    "qnli": ("accuracy", *PROBABILITY_METRICS),
    "rte": ("accuracy", *PROBABILITY_METRICS),
    "wnli": ("accuracy", *PROBABILITY_METRICS),
}
#: The metrics of a task that names none (or no GLUE task), per kind.
DEFAULT_METRICS: Mapping[str, tuple[str, ...]] = FactTable("default_metrics")


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of exact matches."""
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of class 1 when the labels are {0, 1}; otherwise the macro average over the classes present."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    classes = np.union1d(predictions, labels)
    positives = [1] if set(classes.tolist()) <= {0, 1} else classes.tolist()
    scores = []
    for positive in positives:
        tp = np.sum((predictions == positive) & (labels == positive))
        denominator = np.sum(predictions == positive) + np.sum(labels == positive)
        scores.append(0.0 if denominator == 0 else 2.0 * tp / denominator)
    return float(np.mean(scores))


def matthews_correlation(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation coefficient (multi-class form, as scikit-learn); 0 when undefined."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    y, p = encoded[: len(labels)], encoded[len(labels) :]
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (y, p), 1.0)
    t_k, p_k = confusion.sum(axis=1), confusion.sum(axis=0)
    c, s = np.trace(confusion), confusion.sum()
    denominator = math.sqrt((s * s - p_k @ p_k) * (s * s - t_k @ t_k))
    return 0.0 if denominator == 0 else float((c * s - t_k @ p_k) / denominator)


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    x = np.asarray(predictions, dtype=np.float64) - np.mean(predictions)
    y = np.asarray(labels, dtype=np.float64) - np.mean(labels)
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float("nan") if denominator == 0 else float(x @ y / denominator)


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get their average rank (scipy's `rankdata(method="average")`)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks)."""
    return pearson(_ranks(predictions), _ranks(labels))


def mse(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error."""
    return float(np.mean((np.asarray(predictions, dtype=np.float64) - np.asarray(labels, dtype=np.float64)) ** 2))


#: Probabilities are clipped here before the log, so a confidently wrong member costs a finite NLL.
_PROBABILITY_FLOOR = 1e-15


def nll(values: np.ndarray, labels: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood (nats): of the true class for class probabilities ``[N, C]`` (scikit-learn's
    `log_loss`, same clipping), or of each predicted token for token log-likelihoods ``[T]`` (causal LM)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        if labels is None:
            raise ValueError("the classification NLL needs labels")
        picked = values[np.arange(len(values)), np.asarray(labels, dtype=np.int64)]
        return float(-np.mean(np.log(np.clip(picked, _PROBABILITY_FLOOR, 1.0))))
    return float(-np.mean(values))


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Brier score: mean squared distance of the probabilities to the one-hot truth, summed over classes;
    halved for two classes, which makes it the positive-class form (scikit-learn's `brier_score_loss`)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    one_hot = np.eye(probabilities.shape[1])[np.asarray(labels, dtype=np.int64)]
    score = float(np.mean(np.sum((probabilities - one_hot) ** 2, axis=1)))
    return score / 2 if probabilities.shape[1] == 2 else score


def ece(probabilities: np.ndarray, labels: np.ndarray, num_bins: int = ECE_BINS) -> float:
    """Expected calibration error: |accuracy - confidence| per equal-width confidence bin ((m-1)/M, m/M],
    weighted by the bin's share of the examples (top-label confidence, `ECE_BINS` bins)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += abs(float(np.mean(correct[inside])) - float(np.mean(confidence[inside]))) * np.mean(inside)
    return float(total)


def perplexity(token_log_likelihoods: np.ndarray, _: np.ndarray | None = None) -> float:
    """exp(mean NLL per token): the perplexity of whatever distribution produced the log-likelihoods."""
    return float(math.exp(nll(token_log_likelihoods)))


@dataclass(frozen=True)
class Metric:
    """A metric function, the outputs it scores (`tasks.registry`: class scores, values, token log-likelihoods),
    which direction is better, and whether it scores the class probabilities instead of the predicted class ids."""

    function: Callable[..., float]
    scores: tuple[str, ...]
    higher_is_better: bool = True
    uses_probabilities: bool = False

    def applies_to(self, kind: str | KindObject) -> bool:
        """Whether the outputs of `kind` are what this metric scores."""
        return kind_facts(kind).outputs in self.scores


METRICS: dict[str, Metric] = {
    "accuracy": Metric(accuracy, (CLASS_SCORES,)),
    "f1": Metric(f1, (CLASS_SCORES,)),
    "matthews_correlation": Metric(matthews_correlation, (CLASS_SCORES,)),
    "pearson": Metric(pearson, (VALUES,)),
    "spearman": Metric(spearman, (VALUES,)),
    "mse": Metric(mse, (VALUES,), higher_is_better=False),
    "perplexity": Metric(perplexity, (TOKEN_LOG_LIKELIHOODS,), higher_is_better=False),
    "nll": Metric(nll, (CLASS_SCORES, TOKEN_LOG_LIKELIHOODS), higher_is_better=False, uses_probabilities=True),
    "brier": Metric(brier, (CLASS_SCORES,), higher_is_better=False, uses_probabilities=True),
    "ece": Metric(ece, (CLASS_SCORES,), higher_is_better=False, uses_probabilities=True),
}


#: Keys of external metrics (`evaluate` modules, `compute_metrics` functions) for which lower is better,
#: besides the built-in ones and any key ending in "loss" or "error"; every other key is higher-is-better.
LOWER_IS_BETTER = frozenset({"mae", "mape", "mse", "rmse", "wer", "cer", "ter", "perplexity"})


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric `name` is better (built-ins: their own; other keys: see `LOWER_IS_BETTER`)."""
    if name in METRICS:
        return METRICS[name].higher_is_better
    return not (name in LOWER_IS_BETTER or name.endswith(("loss", "error")))


def metric_names_for(
    kind: str | KindObject, task: str | None = None, names: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The metrics to report: `names` if given (checked), the GLUE ones for a GLUE `task` (kinds with one label per
    example), else the kind's default."""
    facts = kind_facts(kind)
    if names is None:
        glue = GLUE_METRICS.get((task or "").lower())
        names = glue if glue is not None and facts.glue_metrics else facts.default_metrics
    names = tuple(names)
    if not names:
        raise ValueError("metrics must name at least one metric")
    for name in names:
        if name not in METRICS:
            raise ValueError(
                f"unknown metric {name!r}; accepted: {', '.join(METRICS)}, or an evaluate module "
                "(evaluate.load(...)) or a compute_metrics function in its place"
            )
        if not METRICS[name].applies_to(facts.name):
            needs = next(other for other in kind_names() if METRICS[name].applies_to(other))
            raise ValueError(f"metric {name!r} does not apply to {facts.name} outputs (it needs {needs})")
    return names


def compute_metrics(
    names: Sequence[str],
    predictions: np.ndarray,
    labels: np.ndarray | None,
    probabilities: np.ndarray | None = None,
) -> dict[str, float]:
    """{name: value} for each metric; `predictions` are class ids, values, or token log-likelihoods (LM).

    Classification's probability metrics (`nll`, `brier`, `ece`) need `probabilities` ``[N, C]``.
    """
    if probabilities is not None and labels is not None:
        check_class_labels(labels, np.asarray(probabilities).shape[-1])
    values = {}
    for name in names:
        metric = METRICS[name]
        source = predictions
        if metric.uses_probabilities and probabilities is not None:
            source = probabilities
        elif metric.uses_probabilities and np.issubdtype(np.asarray(predictions).dtype, np.integer):  # class ids
            raise ValueError(f"metric {name!r} scores class probabilities; pass probabilities=[N, C]")
        values[name] = metric.function(source, labels)
    return values


def check_class_labels(labels: np.ndarray, num_classes: int) -> None:
    """Refuse labels outside the model's classes [0, num_classes), naming a few (not numpy's IndexError)."""
    labels = np.asarray(labels)
    bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if bad.size:
        shown = ", ".join(str(x) for x in bad[:5].tolist())
        raise ValueError(
            f"the labels hold values outside the model's classes ({shown}): labels must be integers in "
            f"[0, {num_classes - 1}] for a model with {num_classes} outputs"
        )


def is_better(name: str, candidate: float, incumbent: float, *, or_equal: bool = False) -> bool:
    """Whether `candidate` beats `incumbent` for metric `name` (NaN never beats anything)."""
    if math.isnan(candidate):
        return False
    if math.isnan(incumbent):
        return True
    if or_equal and candidate == incumbent:
        return True
    return candidate > incumbent if higher_is_better(name) else candidate < incumbent
