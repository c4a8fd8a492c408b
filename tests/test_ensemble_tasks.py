"""Token classification and multiple choice in `SnapshotEnsemble`: per-token / per-choice probability averaging,
soups, selection, the card and the round trip, each against the snapshots run on their own with transformers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers.ensembles import choice_batches, minilm_choice_folder, tiny_token_folder, token_batches
from transformers import AutoModelForMultipleChoice, AutoModelForTokenClassification

from hf_sgdr.snapshots import SnapshotEnsemble

TASKS = {
    "token_classification": (tiny_token_folder, token_batches, AutoModelForTokenClassification, "token-classification"),
    "multiple_choice": (minilm_choice_folder, choice_batches, AutoModelForMultipleChoice, "multiple-choice"),
}


def _scored(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class probabilities, labels) of what is scored: every token with a label (not -100), or every example."""
    if logits.dim() == 3:
        keep = labels != -100
        return logits[keep].double().softmax(-1), labels[keep]
    return logits.double().softmax(-1), labels


def _direct(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The model run on its own over the batches: probabilities and labels of the scored positions."""
    model.eval()
    probabilities, labels = [], []
    with torch.inference_mode():
        for batch in batches:
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            p, y = _scored(model(**inputs).logits, batch["labels"])
            probabilities.append(p)
            labels.append(y)
    return torch.cat(probabilities), torch.cat(labels)


def _soup(auto: type, folder: Path, names: list[str]) -> torch.nn.Module:
    """The uniform soup made by hand: the mean of the snapshots' floating-point weights."""
    models = [auto.from_pretrained(folder, subfolder=name) for name in names]
    soup = models[0]
    states = [m.state_dict() for m in models]
    soup.load_state_dict(
        {k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v for k, v in states[0].items()}
    )
    return soup


@pytest.mark.parametrize("kind", list(TASKS))
def test_round_trip_averages_probabilities_and_reports_soups_and_selection(kind: str, tmp_path: Path) -> None:
    build, make_batches, auto, pipeline_tag = TASKS[kind]
    folder: Path = build()
    batches: Callable[[str], list] = make_batches
    eval_batches, selection_batches = batches("validation[:32]"), batches("train[100:132]")
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    assert ensemble.kind == kind and ensemble.auto_class == auto.__name__
    names = ensemble.snapshot_names
    direct = [_direct(auto.from_pretrained(folder, subfolder=name), eval_batches) for name in names]
    members = torch.stack([p for p, _ in direct])
    labels = direct[0][1]
    assert not torch.allclose(members[0], members[-1], atol=1e-3)  # the snapshots really differ

    prediction = ensemble.predict(eval_batches)
    torch.testing.assert_close(prediction.scores, members.mean(dim=0))
    assert torch.equal(prediction.labels, labels)
    if kind == "token_classification":  # only the labelled tokens are scored: special tokens and padding are not
        every = sum(b["labels"].numel() for b in eval_batches)
        assert len(labels) == sum(int((b["labels"] != -100).sum()) for b in eval_batches) < every

    report = ensemble.evaluate(eval_batches, selection_batches, selection_split="train", selection_metric="nll")
    assert report.metrics == ["accuracy", "nll", "brier", "ece"]
    mean = members.mean(dim=0)
    full = report.row(f"ensemble (last {len(names)}, average)")
    assert full.metrics["accuracy"] == pytest.approx(float((mean.argmax(-1) == labels).double().mean()))
    assert full.metrics["nll"] == pytest.approx(float(-mean[torch.arange(len(labels)), labels].log().mean()))
    soup_probabilities, _ = _direct(_soup(auto, folder, names), eval_batches)
    soup_accuracy = float((soup_probabilities.argmax(-1) == labels).double().mean())
    assert report.row("uniform soup").metrics["accuracy"] == pytest.approx(soup_accuracy)
    kinds = {row.kind for row in report.rows}
    assert {"best_snapshot", "greedy_soup", "greedy_ensemble", "weighted_ensemble"} <= kinds
    assert 0 < full.diversity["disagreement"] < 1

    saved = ensemble.save_pretrained(tmp_path / "copy")
    card = (saved / "README.md").read_text()
    assert f"pipeline_tag: {pipeline_tag}" in card and "uniform soup" in card and auto.__name__ in card
    reloaded = SnapshotEnsemble.from_pretrained(saved, progress=False).predict(eval_batches)
    assert torch.equal(reloaded.scores, prediction.scores)


def test_tokens_without_labels_are_those_of_the_attention_mask() -> None:
    batches = token_batches("validation[:16]")
    unlabelled = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    prediction = SnapshotEnsemble.from_pretrained(tiny_token_folder(), progress=False).predict(unlabelled)
    assert prediction.labels is None
    assert len(prediction.predictions) == sum(int(b["attention_mask"].sum()) for b in batches)


def test_the_command_line_refuses_to_build_data_for_these_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    from hf_sgdr.cli import main

    with pytest.raises(SystemExit):
        main(
            ["evaluate", str(minilm_choice_folder()), "--dataset_name", "nyu-mll/glue", "--dataset_config_name", "sst2"]
        )
    assert "for multiple_choice snapshots build the dataloader yourself" in capsys.readouterr().err
