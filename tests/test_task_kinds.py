"""Task kinds: the torch-free registry (names, command-line facts, lookup), one object per kind, and a new kind
added from one file (here: this test module) working through combine, metrics and `SnapshotEnsemble`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping

import pytest
import torch
from helpers.ensembles import tiny_bert

from hf_sgdr.snapshots import METHODS, SnapshotEnsemble, metric_names_for
from hf_sgdr.snapshots.combine import Combined, combine, fit_weights
from hf_sgdr.snapshots.metric_suite import MetricSuite
from hf_sgdr.snapshots.tasks import KindFacts, kind_facts, kind_names, register_kind, registry, task_kind
from hf_sgdr.snapshots.tasks.base import TaskKind, masked_rows
from hf_sgdr.snapshots.tasks.class_scores import ClassScores, TokenScores
from hf_sgdr.snapshots.tasks.registry import VALUES, kind_of_model, supported_auto_classes

BUILT_IN = ("classification", "regression", "causal_lm", "token_classification", "multiple_choice")


def test_every_built_in_kind_is_found_by_name_with_its_facts() -> None:
    assert kind_names() == BUILT_IN
    kinds = {name: task_kind(name) for name in BUILT_IN}
    assert all(isinstance(kind, TaskKind) and kind.name == name for name, kind in kinds.items())
    assert task_kind(kinds["regression"]) is kinds["regression"]  # the object passes the door as it is
    assert type(kinds["multiple_choice"]) is ClassScores and type(kinds["token_classification"]) is TokenScores
    assert METHODS["classification"] == ("average", "logits", "vote", "weighted") == kinds["classification"].methods
    assert kind_facts("causal_lm").pipeline_tag == "text-generation"
    assert kind_facts("multiple_choice").pipeline_tag == "multiple-choice"
    assert supported_auto_classes() == (
        "AutoModelForSequenceClassification",
        "AutoModelForCausalLM",
        "AutoModelForTokenClassification",
        "AutoModelForMultipleChoice",
    )


@pytest.mark.parametrize(
    ("auto_class", "num_labels", "problem_type", "kind"),
    [
        ("AutoModelForCausalLM", None, None, "causal_lm"),
        ("AutoModelForTokenClassification", 5, None, "token_classification"),
        ("AutoModelForMultipleChoice", 1, None, "multiple_choice"),
        ("AutoModelForSequenceClassification", 3, None, "classification"),
        ("AutoModelForSequenceClassification", 1, None, "regression"),
        ("AutoModelForSequenceClassification", 2, "regression", "regression"),
        (None, None, None, "classification"),
    ],
)
def test_the_kind_of_a_model_comes_from_its_auto_class_and_config(
    auto_class: str | None, num_labels: int | None, problem_type: str | None, kind: str
) -> None:
    assert kind_of_model(auto_class, num_labels, problem_type) == kind


def test_an_unknown_kind_is_refused_naming_the_parameter_and_the_names() -> None:
    accepted = ", ".join(BUILT_IN)
    with pytest.raises(ValueError, match=f"^kind must be one of {accepted}; got 'ner'$"):
        task_kind("ner")
    with pytest.raises(ValueError, match=r"^--kind must be one of classification, .*; got 'ner'$"):
        kind_facts("ner", parameter="--kind")
    with pytest.raises(ValueError, match="kind 'regression' is already registered with other facts"):
        register_kind(KindFacts("regression", VALUES, ("average",), ("mse",), "x", "AutoModelForX", "m:X"))


def test_the_registry_and_the_command_line_import_no_torch() -> None:
    code = (
        "import sys\n"
        "import hf_sgdr.snapshots.tasks, hf_sgdr.snapshots.metrics, hf_sgdr.snapshots.cli\n"
        "from hf_sgdr.snapshots.tasks import kind_facts\n"
        "assert kind_facts('causal_lm').methods == ('average', 'weighted')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class MedianValues(TaskKind):
    """A toy kind: one value per example, combined by the mean or the members' median."""

    external_metrics = True

    def batch_outputs(
        self,
        logits: torch.Tensor,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor | None,
        temperatures: tuple[float, ...] | None,
    ) -> torch.Tensor:
        return logits.reshape(logits.shape[0]).float()

    def combine(self, outputs: torch.Tensor, method: str, weights: torch.Tensor) -> Combined:
        values = outputs.double()
        combined = values.median(dim=0).values if method == "median" else torch.einsum("k,kn->n", weights, values)
        return Combined(combined, combined)

    def weight_loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda log_weights: ((log_weights.exp() @ outputs.double() - labels.double()) ** 2).mean()

    def trainer_predictions(self, combined: Combined) -> torch.Tensor:
        return combined.predictions


MEDIAN_FACTS = KindFacts(
    "median_values",
    VALUES,
    ("average", "median"),
    ("mse", "pearson"),
    "text-classification",
    "AutoModelForSequenceClassification",
    f"{__name__}:MEDIAN",
)
MEDIAN = MedianValues(MEDIAN_FACTS)


@pytest.fixture
def median_kind(monkeypatch: pytest.MonkeyPatch) -> TaskKind:
    """The toy kind registered for one test (the registry as it was afterwards)."""
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    register_kind(MEDIAN_FACTS)
    return task_kind("median_values")


def test_a_new_kind_is_one_module_and_the_rest_asks_it(median_kind: TaskKind) -> None:
    assert median_kind is MEDIAN and kind_names()[-1] == "median_values"
    assert METHODS["median_values"] == ("average", "median")
    assert metric_names_for("median_values") == ("mse", "pearson")
    with pytest.raises(ValueError, match="metric 'accuracy' does not apply to median_values outputs"):
        metric_names_for("median_values", names=["accuracy"])
    outputs = torch.tensor([[1.0, 5.0], [2.0, 0.0], [9.0, 1.0]])
    assert combine(outputs, "median_values", "median").predictions.tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match="method must be one of average, median for median_values; got 'vote'"):
        combine(outputs, median_kind, "vote")
    assert fit_weights(outputs, torch.tensor([9.0, 1.0]), median_kind)[2] > 0.95
    suite = MetricSuite("median_values")
    assert suite.compute(combine(outputs, median_kind), torch.tensor([4.0, 2.0]))["mse"] == pytest.approx(0.0)

    ensemble = SnapshotEnsemble(kind="median_values", progress=False)
    members = [tiny_bert(num_labels=1) for _ in range(3)]
    for seed, model in enumerate(members):
        torch.manual_seed(seed)
        model.classifier.reset_parameters()
        ensemble.add_model(model.eval())
    torch.manual_seed(0)
    batches = [{"input_ids": torch.randint(1000, 2000, (4, 6)), "labels": torch.randn(4)} for _ in range(2)]
    with torch.inference_mode():
        direct = torch.stack([torch.cat([m(input_ids=b["input_ids"]).logits[:, 0] for b in batches]) for m in members])
    prediction = ensemble.predict(batches, "median")
    assert ensemble.kind == prediction.kind == "median_values"
    torch.testing.assert_close(prediction.predictions, direct.double().median(dim=0).values)
    report = ensemble.evaluate(batches, soups=False)
    assert report.kind == "median_values" and report.metrics == ["mse", "pearson"]


@pytest.mark.parametrize("trailing", [(), (3,), (4, 2)])
def test_masked_rows_equals_boolean_indexing_in_row_major_order(trailing: tuple[int, ...]) -> None:
    """The scored tokens' rows, selected from positions counted on the CPU (no device sync per batch on a GPU)."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(5, 7, *trailing, generator=generator)
    for mask in (torch.rand(5, 7, generator=generator) > 0.4, torch.zeros(5, 7, dtype=torch.bool)):
        assert torch.equal(masked_rows(values, mask), values[mask])
    with pytest.raises(ValueError, match=r"a mask of shape \(5, 6\) cannot select rows of values shaped \(5, 7"):
        masked_rows(values, torch.ones(5, 6, dtype=torch.bool))
