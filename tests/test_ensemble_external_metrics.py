"""`evaluate` modules and `compute_metrics` functions in place of the built-in metric names."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers.ensembles import minilm_folder, sst2_loader, tiny_lm_folder
from helpers.metrics import write_metric_script

from hf_sgdr.snapshots import SnapshotEnsemble


@pytest.fixture(scope="module")
def accuracy_module(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A real `evaluate` module loaded from a metric script in a local folder (offline)."""
    import evaluate

    return evaluate.load(str(write_metric_script(tmp_path_factory.mktemp("metrics"))))


def compute_metrics(eval_prediction: object) -> dict[str, float]:
    """A Trainer-style compute_metrics: logits and label ids in, a dict out."""
    logits, labels = eval_prediction
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    return {
        "acc": float(np.mean(logits.argmax(axis=-1) == labels)),
        "log_loss": float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels]))),
    }


@pytest.fixture(scope="module")
def ensemble() -> SnapshotEnsemble:
    return SnapshotEnsemble.from_pretrained(minilm_folder(), progress=False)


@pytest.fixture(scope="module")
def loaders() -> tuple[object, object]:
    return sst2_loader("validation[:32]"), sst2_loader("train[200:232]")


def test_an_evaluate_module_gives_the_builtin_accuracy_on_every_row(
    ensemble: SnapshotEnsemble, loaders: tuple[object, object], accuracy_module: object
) -> None:
    builtin = ensemble.evaluate(*loaders, metrics=["accuracy"], selection_split="train")
    external = ensemble.evaluate(*loaders, metrics=accuracy_module, selection_split="train")
    assert external.metrics == ["accuracy"]  # the module's numbers; its text value is left out
    assert [row.name for row in external.rows] == [row.name for row in builtin.rows]
    for ours, theirs in zip(external.rows, builtin.rows, strict=True):
        assert ours.metrics == pytest.approx(theirs.metrics) and ours.members == theirs.members
    assert len({row.metrics["accuracy"] for row in external.rows}) > 1  # the rows really differ
    prediction = ensemble.predict(loaders[0])
    assert prediction.metrics(accuracy_module) == pytest.approx(prediction.metrics(["accuracy"]))


def test_a_compute_metrics_function_sees_logits_and_picks_by_its_own_loss(
    ensemble: SnapshotEnsemble, loaders: tuple[object, object]
) -> None:
    builtin = ensemble.evaluate(*loaders, metrics=["accuracy", "nll"], selection_metric="nll", selection_split="train")
    external = ensemble.evaluate(
        *loaders, metrics=compute_metrics, selection_metric="log_loss", selection_split="train"
    )
    assert external.metrics == ["acc", "log_loss"]
    for ours, theirs in zip(external.rows, builtin.rows, strict=True):
        assert ours.metrics["acc"] == pytest.approx(theirs.metrics["accuracy"])
        assert ours.metrics["log_loss"] == pytest.approx(theirs.metrics["nll"], rel=1e-9)
        assert ours.members == theirs.members  # "log_loss" is minimised, as "nll" is
    mixed = ensemble.evaluate(loaders[0], metrics=["brier", compute_metrics], soups=False)
    alone = ensemble.evaluate(loaders[0], metrics=["brier"], soups=False)
    assert mixed.metrics == ["brier", "acc", "log_loss"]
    assert [row.metrics["brier"] for row in mixed.rows] == [row.metrics["brier"] for row in alone.rows]


def test_bad_metric_arguments_are_refused_with_the_reason(
    ensemble: SnapshotEnsemble, loaders: tuple[object, object], accuracy_module: object
) -> None:
    with pytest.raises(TypeError, match="metrics entries must be built-in metric names, evaluate modules"):
        ensemble.evaluate(loaders[0], metrics=["accuracy", 3])
    with pytest.raises(ValueError, match=r"unknown metric 'bleu'.*or a compute_metrics function"):
        ensemble.evaluate(loaders[0], metrics=["bleu"])
    with pytest.raises(ValueError, match=r"metric keys \['accuracy'\] are computed twice"):
        ensemble.evaluate(loaders[0], metrics=["accuracy", accuracy_module], soups=False)
    with pytest.raises(TypeError, match="returned float; a dict of numbers was expected"):
        ensemble.evaluate(loaders[0], metrics=lambda prediction: 0.5, soups=False)
    with pytest.raises(ValueError, match="unknown selection_metric 'f2'; accepted: acc, log_loss, accuracy"):
        ensemble.evaluate(
            *loaders, metrics=compute_metrics, selection_metric="f2", selection_split="train", soups=False
        )
    lm = SnapshotEnsemble.from_pretrained(tiny_lm_folder(), progress=False)
    with pytest.raises(ValueError, match="apply to class-score and regression ensembles; causal_lm is scored"):
        lm.evaluate(loaders[0], metrics=accuracy_module)


def test_the_default_metrics_are_the_builtins_and_evaluate_is_never_imported(
    ensemble: SnapshotEnsemble, loaders: tuple[object, object]
) -> None:
    report = ensemble.evaluate(loaders[0], soups=False)
    assert report.metrics == ["accuracy", "nll", "brier", "ece"]
    code = "import sys, hf_sgdr.snapshots.ensemble, hf_sgdr.snapshots.metric_suite; print('evaluate' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"  # nothing can reach for the Hub's metric scripts by default
