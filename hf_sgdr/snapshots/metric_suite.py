"""What a report scores: built-in metric names, `evaluate` modules and `compute_metrics` functions.

`metrics=` of `SnapshotEnsemble.evaluate` (and of `evaluate_trainer_snapshots`, `EnsemblePrediction.metrics`, the
recipes) takes built-in names (the offline default, `metrics.METRICS`), an `evaluate` module (what
`evaluate.load(...)` returns: called as `compute(predictions=..., references=...)` with class ids or
values), a `compute_metrics` function as the `Trainer` takes (called with an `EvalPrediction` whose
`predictions` are the ensemble's log-probabilities ``[N, C]``, i.e. logits: argmax is the class, softmax
the ensemble's distribution; values ``[N]`` for regression; returns a dict), or a list mixing them.
Nothing here imports `evaluate`: a module is recognised by its `compute` method. Numbers come back as
floats; other values (per-class lists, nested dicts) are left out with a warning.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .combined import Combined
from .metrics import METRICS, metric_names_for
from .tasks import task_kind

if TYPE_CHECKING:
    from .tasks.base import TaskKind

logger = logging.getLogger(__name__)

#: A built-in metric name, an `evaluate.EvaluationModule`, or a `compute_metrics(EvalPrediction) -> dict`.
MetricSpec = str | Any | Callable[[Any], Mapping[str, Any]]


def _is_module(spec: Any) -> bool:
    return callable(getattr(spec, "compute", None))


class _External:
    """One `evaluate` module or `compute_metrics` function, called on a combined output."""

    def __init__(self, spec: Any) -> None:
        if not (_is_module(spec) or callable(spec)):
            raise TypeError(
                "metrics entries must be built-in metric names, evaluate modules (evaluate.load(...)) or "
                f"compute_metrics functions (EvalPrediction -> dict); got {type(spec).__name__}"
            )
        self.spec = spec
        self.label = getattr(spec, "name", None) or getattr(spec, "__name__", None) or type(spec).__name__
        self.keys: tuple[str, ...] | None = None  # known after the first call

    def __call__(self, combined: Combined, labels: torch.Tensor, kind: TaskKind) -> dict[str, float]:
        references = labels.numpy()
        if _is_module(self.spec):
            result = self.spec.compute(predictions=combined.predictions.numpy(), references=references)
        else:
            from transformers import EvalPrediction

            scores = kind.trainer_predictions(combined).numpy()
            result = self.spec(EvalPrediction(predictions=scores, label_ids=references))
        return self._numbers(result)

    def _numbers(self, result: Any) -> dict[str, float]:
        if not isinstance(result, Mapping):
            raise TypeError(f"metric {self.label!r} returned {type(result).__name__}; a dict of numbers was expected")
        values = {
            str(k): float(v) for k, v in result.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)
        }
        if self.keys is None:
            skipped = sorted(str(k) for k in result if str(k) not in values)
            if skipped:
                logger.warning("metric %r: left out the non-numeric values %s", self.label, skipped)
            if not values:
                raise ValueError(f"metric {self.label!r} returned no numeric value (got {sorted(map(str, result))})")
            self.keys = tuple(values)
        return values


class MetricSuite:
    """The metrics of one evaluation (see the module docstring), computed on `Combined` outputs, in the order given."""

    def __init__(
        self, kind: str | TaskKind, task: str | None = None, metrics: MetricSpec | Sequence[MetricSpec] | None = None
    ):
        kind = task_kind(kind)
        single = isinstance(metrics, str) or callable(metrics) or _is_module(metrics)
        specs = None if metrics is None else [metrics] if single else list(metrics)
        if specs is not None and not specs:
            raise ValueError("metrics must name at least one metric")
        if specs is None:
            specs = list(metric_names_for(kind, task))
        names = [s for s in specs if isinstance(s, str)]
        if names:
            metric_names_for(kind, task, names)  # each name checked against the kind
        if len(names) < len(specs) and not kind.external_metrics:
            raise ValueError(
                f"evaluate modules and compute_metrics functions apply to class-score and regression ensembles; "
                f"{kind.name} is scored with the built-in metrics ({', '.join(metric_names_for(kind))})"
            )
        self.kind = kind
        self.entries: list[str | _External] = [s if isinstance(s, str) else _External(s) for s in specs]

    def _external(self) -> list[_External]:
        return [entry for entry in self.entries if isinstance(entry, _External)]

    def compute(self, combined: Combined, labels: torch.Tensor | None, only: str | None = None) -> dict[str, float]:
        """Every metric of the suite (or just the key `only`, which may also be any built-in name)."""
        if only is not None and only in METRICS and not any(only in (e.keys or ()) for e in self._external()):
            return combined.metrics([only], labels)
        values: dict[str, float] = {}
        for entry in self.entries if only is None else self._external():
            if isinstance(entry, str):
                result = combined.metrics([entry], labels)
            elif only is not None and entry.keys is not None and only not in entry.keys:
                continue
            elif labels is None:
                raise ValueError(f"metric {entry.label!r} needs labels")
            else:
                result = entry(combined, labels, self.kind)
            clash = sorted(set(result) & set(values))
            if clash:
                raise ValueError(f"metric keys {clash} are computed twice; name each metric once")
            values.update(result)
        if only is None:
            return values
        if only not in values:
            accepted = ", ".join(dict.fromkeys([*self.keys, *METRICS]))
            raise ValueError(f"unknown selection_metric {only!r}; accepted: {accepted}")
        return {only: values[only]}

    @property
    def keys(self) -> list[str]:
        """The keys reported, in order (an external metric's are known once it has run)."""
        return [k for e in self.entries for k in ([e] if isinstance(e, str) else e.keys or ())]
