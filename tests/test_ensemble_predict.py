"""SnapshotEnsemble with real models and data: round trips, methods, soups, LM perplexity, memory bound, report."""

from __future__ import annotations

import functools
import json
import math
import threading
from pathlib import Path

import pytest
import torch
from helpers.ensembles import (
    minilm_folder,
    sst2_loader,
    tiny_bert,
    tiny_bert_folder,
    tiny_gpt2,
    tiny_lm_folder,
    tokenizer,
    wikitext_blocks,
)
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from hf_sgdr.snapshots import EvaluationReport, SnapshotEnsemble, SnapshotManifest
from hf_sgdr.snapshots.calibration import LM_TEMPERATURE_GRID
from hf_sgdr.snapshots.outputs import materialize
from hf_sgdr.snapshots.runners import ModelRunner


def _direct_outputs(folder: Path, names: list[str], loader: object, auto: type = AutoModelForSequenceClassification):
    """Each snapshot loaded on its own with transformers and run over the batches: the reference."""
    batches = materialize(loader)
    outputs = []
    for name in names:
        model = auto.from_pretrained(folder, subfolder=name).eval()
        with torch.inference_mode():
            outputs.append(torch.cat([model(**inputs).logits for inputs in batches.inputs]))
    return torch.stack(outputs), batches.example_labels()


@pytest.fixture(scope="module")
def eval_loader() -> object:
    return sst2_loader("validation[:24]")


def test_minilm_round_trip_gives_identical_outputs(tmp_path: Path, eval_loader: object) -> None:
    folder = minilm_folder()
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    assert ensemble.snapshot_names == ["cycle-000", "cycle-001", "cycle-002"] and ensemble.kind == "classification"
    prediction = ensemble.predict(eval_loader)
    direct, labels = _direct_outputs(folder, ensemble.snapshot_names, eval_loader)
    assert torch.equal(prediction.member_outputs, direct)
    assert torch.equal(prediction.labels, labels)
    assert len({tuple(x.flatten().tolist()[:4]) for x in direct}) == 3  # the snapshots really differ

    saved = ensemble.save_pretrained(tmp_path / "copy")
    source, copy = SnapshotManifest.load(folder), SnapshotManifest.load(saved)
    assert [r.files for r in copy.snapshots] == [r.files for r in source.snapshots]  # byte-identical snapshot files
    assert copy.schedule == source.schedule and copy.library_versions["hf_sgdr"]
    reloaded = SnapshotEnsemble.from_pretrained(saved, progress=False).predict(eval_loader)
    assert torch.equal(reloaded.member_outputs, prediction.member_outputs)
    assert torch.equal(reloaded.scores, prediction.scores) and torch.equal(reloaded.predictions, prediction.predictions)


def test_seed_api_keeps_cpu_copies_of_the_last_snapshots(tmp_path: Path, eval_loader: object) -> None:
    folder = tiny_bert_folder()
    models = [AutoModelForSequenceClassification.from_pretrained(folder, subfolder=f"cycle-{i:03d}") for i in range(4)]
    ensemble = SnapshotEnsemble(max_snapshots=3, tokenizer=tokenizer(), task="sst2", progress=False)
    for step, model in enumerate(models, start=1):
        ensemble.add_model(model, global_step=10 * step, scheduler_step=10 * step, eval_metrics={"accuracy": 0.5})
    assert ensemble.num_snapshots == 3 and ensemble.snapshot_names == ["cycle-001", "cycle-002", "cycle-003"]
    stored = ensemble._members[0].state
    weight = models[1].classifier.weight
    assert stored["classifier.weight"].device.type == "cpu"
    assert stored["classifier.weight"].data_ptr() != weight.data_ptr()  # a copy, not the live model
    with torch.no_grad():
        weight.add_(100.0)  # training goes on: the snapshot must not change
    prediction = ensemble.predict(eval_loader)
    with torch.no_grad():
        weight.sub_(100.0)
    direct, _ = _direct_outputs(folder, ["cycle-001", "cycle-002", "cycle-003"], eval_loader)
    torch.testing.assert_close(prediction.member_outputs, direct)

    ensemble.save_pretrained(tmp_path / "seed")
    manifest = SnapshotManifest.load(tmp_path / "seed")
    assert manifest.auto_class == "AutoModelForSequenceClassification" and manifest.snapshot_type == "full_model"
    assert [r.scheduler_step for r in manifest.snapshots] == [20, 30, 40]
    reloaded = SnapshotEnsemble.from_pretrained(tmp_path / "seed", progress=False)
    assert torch.equal(reloaded.predict(eval_loader).member_outputs, prediction.member_outputs)


def test_each_method_on_real_members_matches_a_hand_combination(eval_loader: object) -> None:
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    direct, labels = _direct_outputs(tiny_bert_folder(), ensemble.snapshot_names, eval_loader)
    logits = direct.double()
    probs = logits.softmax(-1)
    average = ensemble.predict(eval_loader, "average")
    torch.testing.assert_close(average.scores, probs.mean(0))
    mean_logits = ensemble.predict(eval_loader, "logits")
    torch.testing.assert_close(mean_logits.scores, logits.mean(0))
    assert torch.equal(mean_logits.predictions, logits.mean(0).argmax(-1))
    vote = ensemble.predict(eval_loader, "vote")
    votes = torch.stack([(logits.argmax(-1) == c).double().mean(0) for c in range(2)], dim=-1)
    torch.testing.assert_close(vote.scores, votes)
    clear = votes.max(-1).values > 0.5  # no tie between the two classes
    assert torch.equal(vote.predictions[clear], votes.argmax(-1)[clear])
    weighted = ensemble.predict(eval_loader, "weighted", [4, 3, 2, 1])
    expected = (0.4 * probs[0] + 0.3 * probs[1] + 0.2 * probs[2] + 0.1 * probs[3]).argmax(-1)
    assert torch.equal(weighted.predictions, expected) and weighted.weights == pytest.approx([0.4, 0.3, 0.2, 0.1])
    scored = average.metrics()
    assert list(scored) == ["accuracy", "nll", "brier", "ece"]  # the task's metric, then the probabilities'
    assert scored["accuracy"] == pytest.approx((average.predictions == labels).double().mean().item())
    true_class = probs.mean(0)[torch.arange(len(labels)), labels]
    assert scored["nll"] == pytest.approx(-true_class.log().mean().item())
    assert scored["brier"] == pytest.approx(((1 - true_class) ** 2).mean().item())  # two classes: positive form
    assert mean_logits.metrics(["nll"])["nll"] == pytest.approx(
        -logits.mean(0).log_softmax(-1)[torch.arange(len(labels)), labels].mean().item()
    )

    fitted = ensemble.predict(eval_loader, "weighted", selection_dataloader=sst2_loader("train[300:348]"))
    assert sum(fitted.weights) == pytest.approx(1.0) and all(w >= 0 for w in fitted.weights)
    with pytest.raises(ValueError, match="method='weighted' needs weights"):
        ensemble.predict(eval_loader, "weighted")


def test_regression_ensemble_is_the_mean_prediction() -> None:
    ensemble = SnapshotEnsemble(max_snapshots=2, progress=False)
    members = [tiny_bert(num_labels=1) for _ in range(2)]
    torch.manual_seed(1)
    members[1].classifier.reset_parameters()
    for model in members:
        ensemble.add_model(model.eval())
    assert ensemble.kind == "regression"
    loader = sst2_loader("validation[:16]")
    prediction = ensemble.predict(loader)
    with torch.inference_mode():
        direct = [torch.cat([m(**b).logits[:, 0] for b in materialize(loader).inputs]) for m in members]
    torch.testing.assert_close(prediction.predictions, (direct[0].double() + direct[1].double()) / 2)
    assert set(prediction.metrics()) == {"pearson", "spearman", "mse"}
    with pytest.raises(ValueError, match="temperature_scaling needs classification or causal-LM outputs; this "):
        ensemble.evaluate(loader, sst2_loader("validation[16:32]"), temperature_scaling=True)


def _lm_loader(start: int, count: int) -> torch.utils.data.DataLoader:
    blocks = wikitext_blocks()[start : start + count]
    return torch.utils.data.DataLoader([{"input_ids": b, "labels": b} for b in blocks], batch_size=4)


def test_lm_ensemble_perplexity_matches_a_direct_computation() -> None:
    folder = tiny_lm_folder()
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    assert ensemble.kind == "causal_lm"
    prediction = ensemble.predict(_lm_loader(48, 8))
    blocks = wikitext_blocks()[48:56]
    mixture = torch.zeros(8, 31, dtype=torch.float64)  # probability of each next token, averaged over members
    member_ppl = []
    for name in ensemble.snapshot_names:
        model = AutoModelForCausalLM.from_pretrained(folder, subfolder=name).eval()
        with torch.inference_mode():
            probs = model(input_ids=blocks).logits[:, :-1].double().softmax(-1)  # full vocabulary, by brute force
        target = probs.gather(-1, blocks[:, 1:, None]).squeeze(-1)
        mixture += target / 3
        member_ppl.append(math.exp(-target.log().mean().item()))
    expected = math.exp(-mixture.log().mean().item())
    assert prediction.perplexity == pytest.approx(expected, rel=1e-5)
    assert prediction.member_outputs.shape == (3, 8 * 31)  # one log-prob per target token, not the vocabulary
    assert prediction.perplexity < sum(member_ppl) / 3  # mixing probabilities beats averaging perplexities
    assert prediction.metrics()["perplexity"] == pytest.approx(prediction.perplexity)


def _sharpened_lm_members(factor: float) -> dict[str, torch.nn.Module]:
    """The tiny LM's snapshots with their logits multiplied by `factor` (final layer norm scaled): the 12-step
    members are near uniform (best temperatures 0.07-0.16), these have their best temperature inside the grid."""
    folder = tiny_lm_folder()
    members = {}
    for name in SnapshotEnsemble.from_pretrained(folder, progress=False).snapshot_names:
        model = AutoModelForCausalLM.from_pretrained(folder, subfolder=name).eval()
        with torch.no_grad():
            model.transformer.ln_f.weight.mul_(factor)
            model.transformer.ln_f.bias.mul_(factor)
        members[name] = model
    return members


def test_lm_temperature_rows_are_chosen_on_the_grid_and_match_the_full_vocabulary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    members = _sharpened_lm_members(8.0)
    ensemble = SnapshotEnsemble(progress=False)
    for name, model in members.items():
        ensemble.add_model(model, name=name)
    names = ensemble.snapshot_names
    plain = ensemble.evaluate(_lm_loader(48, 8), _lm_loader(56, 8), soups=False)
    report = ensemble.evaluate(_lm_loader(48, 8), _lm_loader(56, 8), soups=False, temperature_scaling=True)
    # The untempered rows read the T = 1 column of the grid: the same numbers as without temperature scaling.
    assert report.rows[: len(plain.rows)] == plain.rows
    scaled = report.rows_of("temperature_scaled")
    assert [row.name for row in scaled] == [
        *(f"{name} (temperature-scaled)" for name in names),
        *(f"ensemble (last {k}, average, members temperature-scaled)" for k in (2, 3)),
    ]
    splits = {"eval": wikitext_blocks()[48:56], "selection": wikitext_blocks()[56:64]}
    with torch.inference_mode():
        logits = {
            (name, split): model(input_ids=blocks).logits[:, :-1].double()
            for name, model in members.items()
            for split, blocks in splits.items()
        }
    grid = LM_TEMPERATURE_GRID

    @functools.cache
    def target_probs(name: str, split: str, t: float) -> torch.Tensor:
        """p(next token) under softmax(logits / t), by brute force over the vocabulary."""
        return (logits[name, split] / t).softmax(-1).gather(-1, splits[split][:, 1:, None]).squeeze(-1)

    def nll(members: list[str], split: str, t: float) -> float:
        """NLL of the mixture of the members' tempered distributions."""
        return -(sum(target_probs(name, split, t) for name in members) / len(members)).log().mean().item()

    for row in scaled:
        # The grid point with the lowest selection NLL, computed here over the full vocabulary...
        selection_nll = [nll(row.members, "selection", t) for t in grid]
        index = min(range(len(grid)), key=selection_nll.__getitem__)
        assert row.temperature == grid[index] and 0 < index < len(grid) - 1 and row.temperature != 1.0
        # ... within 1e-3 nats of the continuous optimum between its grid neighbours, and reported on the eval
        # split at that temperature.
        fine = torch.linspace(grid[index - 1], grid[index + 1], 9).tolist()
        assert selection_nll[index] <= min(nll(row.members, "selection", t) for t in fine) + 1e-3
        assert row.metrics["nll"] == pytest.approx(nll(row.members, "eval", row.temperature), rel=1e-5)
        assert row.metrics["perplexity"] == pytest.approx(math.exp(row.metrics["nll"]), rel=1e-9)
        assert row.forward_passes == len(row.members)
    # A language model's diversity reading is in NLL (a mean member perplexity is an average of exponentials).
    assert "the ensemble's nll is " in report.to_table() and "perplexity is" not in report.to_table()
    # The unsharpened members want a temperature below the grid: the edge is taken, with a warning.
    edge = SnapshotEnsemble.from_pretrained(tiny_lm_folder(), progress=False)
    with caplog.at_level("WARNING", logger="hf_sgdr.snapshots.evaluation"):
        report = edge.evaluate(_lm_loader(48, 8), _lm_loader(56, 8), soups=False, temperature_scaling=True)
    assert {row.temperature for row in report.rows_of("temperature_scaled")} == {grid[0]}
    assert (
        "cycle-000 (temperature-scaled): the fitted temperature 0.25 is at the edge of its range [0.25, 4]"
        in caplog.text
    )


def _mean_state(folder: Path, names: list[str], weights: list[float]) -> dict[str, torch.Tensor]:
    states = [load_file(folder / name / "model.safetensors") for name in names]
    return {key: sum(w * s[key].double() for w, s in zip(weights, states, strict=True)) for key in states[0]}


@pytest.mark.parametrize("build", [tiny_bert_folder, tiny_lm_folder])
def test_soup_equals_the_mean_of_the_parameters(build: object) -> None:
    folder = build()
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    names = ensemble.snapshot_names
    for indices, weights in [(list(range(len(names))), None), ([0, 2], [0.25, 0.75])]:
        module = ensemble._runner.soup(indices, weights)
        chosen = [names[i] for i in indices]
        expected = _mean_state(folder, chosen, weights or [1 / len(chosen)] * len(chosen))
        actual = module.state_dict()
        for key, value in expected.items():  # tied LM weights appear once in the file and must not be doubled
            torch.testing.assert_close(actual[key].double(), value, atol=1e-6, rtol=1e-6)
    if build is tiny_lm_folder:
        assert actual["lm_head.weight"].data_ptr() == actual["transformer.wte.weight"].data_ptr()


def test_members_are_computed_one_at_a_time_with_at_most_two_resident(eval_loader: object) -> None:
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    ensemble.predict(eval_loader)
    tracker = ensemble._runner.tracker
    assert tracker.peak == 1 and tracker.loads == 4  # each member loaded once, after the previous one was released
    ensemble.evaluate(eval_loader, sst2_loader("train[300:332]"), eval_split="validation", selection_split="train")
    assert tracker.peak == ensemble.resident_models_peak == 2  # a soup: the module it accumulates in + one member
    assert tracker.loads >= 4 + 4 + 4  # each member once for both splits, again for every soup
    assert tracker.resident == 1  # afterwards only the last soup is left

    leaky = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    kept = []
    load = leaky._runner._load_module
    leaky._runner._load_module = lambda *args: kept.append(load(*args)) or kept[-1]  # keeps every member alive
    leaky.predict(eval_loader)
    assert leaky.resident_models_peak == 4  # the counter sees the leak: it measures, it does not assume


def test_the_next_member_is_prefetched_in_the_background_and_loaded_on_the_caller_thread() -> None:
    events = []

    def linear(index: int) -> torch.nn.Module:
        module = torch.nn.Linear(2, 2)
        with torch.no_grad():
            module.weight.fill_(float(index))
        return module

    def load_module(index: int, writable: bool) -> torch.nn.Module:
        events.append(("load", index, threading.current_thread().name))
        return linear(index)

    def prefetch(index: int) -> None:
        events.append(("prefetch", index, threading.current_thread().name))

    runner = ModelRunner(load_module, lambda index: linear(index).state_dict(), prefetch, torch.device("cpu"))
    assert [(i, runner.module().weight[0, 0].item()) for i in runner.each([0, 1, 2])] == [(0, 0.0), (1, 1.0), (2, 2.0)]
    for index in range(3):
        assert events.index(("prefetch", index, "hf_sgdr-prefetch_0")) < events.index(
            ("load", index, threading.current_thread().name)
        )
    assert len(events) == 6
    soup = runner.soup([0, 1, 2], [0.5, 0.25, 0.25])
    assert torch.equal(soup.weight, torch.full((2, 2), 0.75))


def test_evaluate_report_rows_table_and_json(tmp_path: Path, eval_loader: object) -> None:
    folder = tiny_bert_folder()
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    selection = sst2_loader("train[300:348]")
    with pytest.raises(ValueError, match="selection_dataloader must be a different split"):
        ensemble.evaluate(eval_loader, eval_loader)
    with pytest.raises(ValueError, match="selection_dataloader must be a different split"):
        ensemble.evaluate(eval_loader, selection, eval_split="validation", selection_split="validation")
    report = ensemble.evaluate(
        eval_loader,
        selection,
        eval_split="validation[:24]",
        selection_split="train[300:348]",
        dataset="nyu-mll/glue",
        json_path=tmp_path / "report.json",
    )
    names = ensemble.snapshot_names
    assert [r.name for r in report.rows] == [
        *names,
        *(f"ensemble (last {k}, average)" for k in range(1, 5)),
        "uniform soup",
        "best snapshot (chosen on selection)",
        "greedy soup",
        "greedy ensemble selection",
        "weighted ensemble (fitted)",
    ]
    direct, labels = _direct_outputs(folder, names, eval_loader)
    for i, name in enumerate(names):
        accuracy = (direct[i].argmax(-1) == labels).double().mean().item()
        assert report.row(name).metrics["accuracy"] == pytest.approx(accuracy)
        assert list(report.row(name).metrics) == ["accuracy", "nll", "brier", "ece"]
    for k in range(1, 5):
        accuracy = (direct[4 - k :].softmax(-1).mean(0).argmax(-1) == labels).double().mean().item()
        row = report.row(f"ensemble (last {k}, average)")
        assert row.metrics["accuracy"] == pytest.approx(accuracy) and row.forward_passes == k
    # Diversity of the ensemble of all four: pairwise disagreement of the argmax, gain over the mean member.
    classes = direct.argmax(-1)
    pairs = [(classes[i] != classes[j]).double().mean().item() for i in range(4) for j in range(i + 1, 4)]
    diversity = report.row("ensemble (last 4, average)").diversity
    assert diversity["disagreement"] == pytest.approx(sum(pairs) / 6)
    member_nll = [report.row(name).metrics["nll"] for name in names]
    assert diversity["mean_member"]["nll"] == pytest.approx(sum(member_nll) / 4)
    assert diversity["gain"]["nll"] == pytest.approx(
        report.row("ensemble (last 4, average)").metrics["nll"] - sum(member_nll) / 4
    )
    assert report.row("ensemble (last 1, average)").diversity is None
    # The best snapshot is the one with the best accuracy on the selection split (the first on ties).
    selection_direct, selection_labels = _direct_outputs(folder, names, selection)
    selection_accuracy = [(selection_direct[i].argmax(-1) == selection_labels).double().mean().item() for i in range(4)]
    best = max(range(4), key=lambda i: (selection_accuracy[i], -i))
    assert report.row("best snapshot (chosen on selection)").members == [names[best]]
    soup = AutoModelForSequenceClassification.from_pretrained(folder, subfolder=names[0]).eval()
    soup.load_state_dict({k: v.float() for k, v in _mean_state(folder, names, [0.25] * 4).items()}, strict=False)
    with torch.inference_mode():
        soup_logits = torch.cat([soup(**inputs).logits for inputs in materialize(eval_loader).inputs])
    soup_accuracy = (soup_logits.argmax(-1) == labels).double().mean().item()
    assert report.row("uniform soup").metrics["accuracy"] == pytest.approx(soup_accuracy)
    greedy = report.row("greedy soup")
    assert set(greedy.members) <= set(names) and greedy.selection_metrics and greedy.forward_passes == 1
    selection_weights = report.row("greedy ensemble selection").weights
    assert sum(selection_weights) == pytest.approx(1.0)
    assert report.resident_models_peak == 2 and report.num_eval_items == 24

    table = report.to_table()
    assert "metrics on validation[:24], chosen on train[300:348]" in table and "greedy soup" in table
    assert f"{report.row('uniform soup').metrics['accuracy']:.4f}" in table
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["rows"][0]["name"] == names[0] and saved["selection_split"] == "train[300:348]"
    assert EvaluationReport.load_json(tmp_path / "report.json") == report
    assert "disagreement" in table and ("members disagree on" in table or "members agree on" in table)
    fitted = report.row("weighted ensemble (fitted)").weights
    assert "(weights " + "/".join(f"{w:.2f}" for w in fitted) + ")" in table  # the table shows what was fitted


def test_evaluate_targets_nll_and_fits_temperatures(eval_loader: object) -> None:
    folder = tiny_bert_folder()
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    selection = sst2_loader("train[300:348]")
    with pytest.raises(ValueError, match=r"temperature_scaling fits each temperature on a selection split: pass "):
        ensemble.evaluate(eval_loader, temperature_scaling=True)
    report = ensemble.evaluate(eval_loader, selection, selection_metric="nll", temperature_scaling=True)
    names = ensemble.snapshot_names
    selection_direct, selection_labels = _direct_outputs(folder, names, selection)
    member_nll = [
        torch.nn.functional.cross_entropy(selection_direct[i].double(), selection_labels).item() for i in range(4)
    ]
    best = min(range(4), key=member_nll.__getitem__)
    assert report.row("best snapshot (chosen on selection)").members == [names[best]]
    assert report.row("best snapshot (chosen on selection)").selection_metrics == {
        "nll": pytest.approx(member_nll[best])
    }
    scaled = report.rows_of("temperature_scaled")
    assert [row.name for row in scaled] == [
        *(f"{name} (temperature-scaled)" for name in names),
        *(f"ensemble (last {k}, average, temperature-scaled)" for k in range(2, 5)),
    ]
    for i, name in enumerate(names):
        row = report.row(f"{name} (temperature-scaled)")
        # The temperature minimises the member's NLL on the selection split: no grid point does better.
        logits = selection_direct[i].double()

        def nll_at(t: float, logits: torch.Tensor = logits) -> float:
            return torch.nn.functional.cross_entropy(logits / t, selection_labels).item()

        assert all(nll_at(row.temperature) <= nll_at(t) + 1e-9 for t in torch.linspace(0.06, 19.0, 300).tolist())
        # A temperature keeps every argmax: accuracy is the member's own.
        assert row.metrics["accuracy"] == pytest.approx(report.row(name).metrics["accuracy"])
    ensemble_row = report.row("ensemble (last 4, average, temperature-scaled)")
    assert ensemble_row.metrics["accuracy"] == pytest.approx(
        report.row("ensemble (last 4, average)").metrics["accuracy"]
    )
    assert ensemble_row.temperature is not None and ensemble_row.forward_passes == 4
    # The table shows each fitted temperature.
    header, *lines = report.to_table().splitlines()[1:]
    assert header.split()[-1] == "temperature"
    assert next(line for line in lines if line.startswith(ensemble_row.name)).split()[-1] == (
        f"{ensemble_row.temperature:.3g}"
    )


def test_empty_ensemble_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_snapshots must be an integer >= 1; got 0"):
        SnapshotEnsemble(max_snapshots=0)
    with pytest.raises(
        ValueError,
        match="kind must be one of classification, regression, causal_lm, token_classification, multiple_choice; "
        "got 'ner'",
    ):
        SnapshotEnsemble(kind="ner")
    with pytest.raises(ValueError, match="the ensemble has no snapshots"):
        SnapshotEnsemble().predict([])
    ensemble = SnapshotEnsemble(progress=False)
    ensemble.add_model(tiny_gpt2())
    with pytest.raises(ValueError, match="name 'cycle-000' is already a snapshot"):
        ensemble.add_model(tiny_gpt2(), name="cycle-000")
    with pytest.raises(ValueError, match="method must be one of average, weighted for causal_lm; got 'vote'"):
        ensemble.predict(_lm_loader(0, 4), "vote")
    import datasets

    rows = datasets.Dataset.from_dict({"input_ids": [[101, 102]], "label": [0]})
    with pytest.raises(TypeError, match="expected a DataLoader of collated tensor batches, got datasets"):
        SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False).evaluate(rows)
    with pytest.raises(TypeError, match=r"mappings of tensors \(a DataLoader with a collator\), got list"):
        SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False).predict([[101, 102]])
    with pytest.raises(ValueError, match=r"snapshots \['cycle-009'\] are not in the manifest"):
        SnapshotEnsemble.from_pretrained(tiny_bert_folder(), snapshots=["cycle-009"])
    assert SnapshotEnsemble.from_pretrained(tiny_bert_folder(), snapshots=2).snapshot_names == [
        "cycle-002",
        "cycle-003",
    ]
