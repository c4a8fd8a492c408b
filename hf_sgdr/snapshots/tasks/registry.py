"""The task kinds by name, with what a command line needs to know of them; torch-free.

A kind says what a model's outputs mean and so how they are collected, combined and scored. Its torch part
(a `base.TaskKind`) lives in its own module and is imported on first use (`task_kind`), so that `hf-sgdr --help`
and the metric tables read the names, methods, default metrics and pipeline tags without importing torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: What a kind's outputs are, which decides the metrics that apply to it (`metrics.Metric.scores`).
CLASS_SCORES = "class scores"
VALUES = "values"
TOKEN_LOG_LIKELIHOODS = "token log-likelihoods"

#: How `hf-sgdr evaluate` and the model card build a kind's data: texts with labels, or blocks of tokens (the
#: layouts of `hf_sgdr.data.dataset_dataloader`, written out here so that the registry imports no torch).
TEXT_DATA = "text"
LM_BLOCKS = "lm blocks"


@dataclass(frozen=True)
class KindFacts:
    """What is known of a kind without torch.

    `methods`: how member outputs may be combined, the default first. `default_metrics`: reported when the
    task names no others. `glue_metrics`: a GLUE task's metrics replace the default (one label per example).
    `auto_class`: the transformers Auto class whose models have these outputs. `data`: `TEXT_DATA`, `LM_BLOCKS`,
    or None when the user builds the dataloader. `implementation`: "module:attribute" of its `TaskKind`.
    """

    name: str
    outputs: str
    methods: tuple[str, ...]
    default_metrics: tuple[str, ...]
    pipeline_tag: str
    auto_class: str
    implementation: str
    glue_metrics: bool = False
    data: str | None = None


class KindObject(Protocol):
    """A kind's object as the registry and the metric tables know it: what it shares with the command line,
    `facts`. Every implementation is a `base.TaskKind`, which carries the rest of the interface (collecting,
    combining and scoring outputs); naming only this protocol here keeps the registry below it, and torch-free."""

    facts: KindFacts


#: Scored on the class probabilities, reported beside every class-score task's own metrics.
PROBABILITY_METRICS = ("nll", "brier", "ece")
_CLASS_METHODS = ("average", "logits", "vote", "weighted")
_HERE = __name__.rpartition(".")[0]

_KINDS: dict[str, KindFacts] = {}


def register_kind(facts: KindFacts) -> KindFacts:
    """Add a kind (a new name, or the same facts again); its `base.TaskKind` is imported from `facts.implementation`."""
    if _KINDS.get(facts.name, facts) != facts:
        raise ValueError(f"kind {facts.name!r} is already registered with other facts")
    _KINDS[facts.name] = facts
    return facts


for _facts in (
    KindFacts(
        "classification",
        CLASS_SCORES,
        _CLASS_METHODS,
        ("accuracy", "f1", *PROBABILITY_METRICS),
        "text-classification",
        "AutoModelForSequenceClassification",
        f"{_HERE}.class_scores:CLASSIFICATION",
        glue_metrics=True,
        data=TEXT_DATA,
    ),
    KindFacts(
        "regression",
        VALUES,
        ("average", "weighted"),
        ("pearson", "spearman", "mse"),
        "text-classification",
        "AutoModelForSequenceClassification",
        f"{_HERE}.regression:REGRESSION",
        glue_metrics=True,
        data=TEXT_DATA,
    ),
    KindFacts(
        "causal_lm",
        TOKEN_LOG_LIKELIHOODS,
        ("average", "weighted"),
        ("perplexity", "nll"),
        "text-generation",
        "AutoModelForCausalLM",
        f"{_HERE}.causal_lm:CAUSAL_LM",
        data=LM_BLOCKS,
    ),
    KindFacts(
        "token_classification",
        CLASS_SCORES,
        _CLASS_METHODS,
        ("accuracy", *PROBABILITY_METRICS),
        "token-classification",
        "AutoModelForTokenClassification",
        f"{_HERE}.class_scores:TOKEN_CLASSIFICATION",
    ),
    KindFacts(
        "multiple_choice",
        CLASS_SCORES,
        _CLASS_METHODS,
        ("accuracy", *PROBABILITY_METRICS),
        "multiple-choice",
        "AutoModelForMultipleChoice",
        f"{_HERE}.class_scores:MULTIPLE_CHOICE",
    ),
):
    register_kind(_facts)

#: The kind of an ensemble whose models say nothing more specific.
DEFAULT_KIND = "classification"


def kind_names() -> tuple[str, ...]:
    """Every registered kind's name, in registration order."""
    return tuple(_KINDS)


def kind_facts(kind: str | KindObject, parameter: str = "kind") -> KindFacts:
    """The facts of `kind` (a name or a `TaskKind`); a `ValueError` naming `parameter` and the accepted names."""
    if not isinstance(kind, str):
        return kind.facts
    if kind not in _KINDS:
        raise ValueError(f"{parameter} must be one of {', '.join(_KINDS)}; got {kind!r}")
    return _KINDS[kind]


def task_kind(kind: str | KindObject, parameter: str = "kind") -> KindObject:
    """The `base.TaskKind` object of `kind` (a name, checked as `kind_facts` does, or already the object)."""
    facts = kind_facts(kind, parameter)
    if not isinstance(kind, str):
        return kind
    module, _, attribute = facts.implementation.partition(":")
    return getattr(importlib.import_module(module), attribute)


def supported_auto_classes() -> tuple[str, ...]:
    """The Auto classes whose outputs some kind knows how to combine, in registration order."""
    return tuple(dict.fromkeys(facts.auto_class for facts in _KINDS.values()))


def kind_of_auto_class(auto_class: str | None) -> str | None:
    """The kind an Auto class alone decides (its only one), or `None` when the model's config must tell (sequence
    classification: class scores or regression) or the class is unknown."""
    named = [facts.name for facts in _KINDS.values() if facts.auto_class == auto_class]
    return named[0] if len(named) == 1 else None


def kind_of_model(auto_class: str | None, num_labels: int | None = None, problem_type: str | None = None) -> str:
    """The kind of a model's outputs: the one kind of its Auto class; a sequence-classification head's outputs are
    values for one label or a regression problem type, class scores otherwise (also for an unknown class)."""
    decided = kind_of_auto_class(auto_class)
    if decided is not None:
        return decided
    return "regression" if problem_type == "regression" or num_labels == 1 else DEFAULT_KIND


class FactTable(Mapping[str, Any]):
    """{kind name: one of its facts}, read live from the registry (so a kind registered later is listed)."""

    def __init__(self, field: str) -> None:
        self._field = field

    def __getitem__(self, name: str) -> Any:
        return getattr(_KINDS[name], self._field)

    def __iter__(self) -> Iterator[str]:
        return iter(_KINDS)

    def __len__(self) -> int:
        return len(_KINDS)

    def __repr__(self) -> str:
        return repr(dict(self))
