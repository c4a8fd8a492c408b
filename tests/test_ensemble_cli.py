"""`hf-sgdr evaluate` on real snapshot folders and real GLUE / WikiText-2 data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from helpers.ensembles import tiny_bert_folder, tiny_lm_folder, tiny_token_folder
from helpers.hub import cache_layout

from hf_sgdr.cli import main
from hf_sgdr.snapshots.calibration import LM_TEMPERATURE_GRID
from hf_sgdr.snapshots.cli import add_snapshot_commands


def test_evaluate_writes_the_report_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    argv = [
        "evaluate",
        str(tiny_bert_folder()),
        "--max_eval_samples",
        "24",
        "--selection_split",
        "train[300:332]",
        "--max_length",
        "32",
        "--output_json",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["dataset"] == "nyu-mll/glue" and report["task"] == "sst2"
    assert report["metrics"] == ["accuracy", "nll", "brier", "ece"]  # the task's metric, then the probabilities'
    assert all(row["metrics"]["nll"] > 0 and 0.0 <= row["metrics"]["ece"] <= 1.0 for row in report["rows"])
    assert report["eval_split"] == "validation" and report["selection_split"] == "train[300:332]"
    assert report["num_eval_items"] == 24 and report["resident_models_peak"] == 2
    kinds = [row["kind"] for row in report["rows"]]
    assert kinds == ["snapshot"] * 4 + ["ensemble"] * 4 + [
        "uniform_soup",
        "best_snapshot",
        "greedy_soup",
        "greedy_ensemble",
        "weighted_ensemble",
    ]
    captured = capsys.readouterr()
    printed = captured.out
    assert "metrics on validation, chosen on train[300:332]" in printed and f"wrote {out}" in printed
    assert all(0.0 <= row["metrics"]["accuracy"] <= 1.0 for row in report["rows"])
    # Says what it does before the long part, and prints no blank lines from transformers' loading bars.
    assert "evaluating 4 snapshots on validation, choosing on train[300:332]: each snapshot" in captured.err
    assert "Loading weights" not in captured.err and "\n\n" not in captured.err


def test_evaluate_sentence_pairs_and_a_language_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rte = [
        "evaluate",
        str(tiny_bert_folder()),
        "--dataset_config_name",
        "rte",
        "--max_eval_samples",
        "16",
        "--no_soups",
        "--method",
        "vote",
        "--output_json",
        str(tmp_path / "rte.json"),
    ]
    assert main(rte) == 0
    report = json.loads((tmp_path / "rte.json").read_text())
    assert report["method"] == "vote" and report["rows"][-1]["name"] == "ensemble (last 4, vote)"
    assert not any(row["kind"] == "uniform_soup" for row in report["rows"])

    from conftest import DATA

    lm = [
        "evaluate",
        str(tiny_lm_folder()),
        "--validation_file",
        str(DATA / "lm" / "wikitext-2-valid.txt"),
        "--max_eval_samples",
        "60",
        "--block_size",
        "32",
        "--output_json",
        str(tmp_path / "lm.json"),
    ]
    assert main(lm) == 0
    report = json.loads((tmp_path / "lm.json").read_text())
    assert report["kind"] == "causal_lm" and report["metrics"] == ["perplexity", "nll"]
    for row in report["rows"]:
        assert row["metrics"]["perplexity"] == pytest.approx(2.718281828459045 ** row["metrics"]["nll"])
    # Temperatures for a language model, chosen on a selection file (the test split's text).
    tempered = ["evaluate", str(tiny_lm_folder()), "--validation_file", str(DATA / "lm" / "wikitext-2-valid.txt")]
    tempered += ["--selection_file", str(DATA / "lm" / "wikitext-2-test.txt"), "--temperature_scaling"]
    tempered += ["--max_eval_samples", "8", "--max_selection_samples", "8", "--block_size", "32", "--no_soups"]
    assert main([*tempered, "--output_json", str(tmp_path / "lm_t.json")]) == 0
    rows = {row["name"]: row for row in json.loads((tmp_path / "lm_t.json").read_text())["rows"]}
    scaled = rows["ensemble (last 3, average, members temperature-scaled)"]
    assert scaled["kind"] == "temperature_scaled" and scaled["temperature"] in LM_TEMPERATURE_GRID
    assert "cycle-002 (temperature-scaled)" in capsys.readouterr().out


def test_evaluate_refuses_choosing_on_the_reported_split(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tiny_bert_folder()), "--selection_split", "validation", "--max_eval_samples", "8"])
    assert exit_info.value.code == 2
    assert "selection_dataloader must be a different split from the reported one" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--temperature_scaling", "--max_selection_samples", "8"],
            "--temperature_scaling, --max_selection_samples needs a selection split and there is none: the run's "
            "manifest records no held-out slice (recipes/glue.py records one, recipes/gpt2_pretrain.py for a "
            "dataset's whole train split only; a Trainer run does not); pass --selection_split SPLIT",
        ),
        (["--validation_file", "VALIDATON_FILE"], "--validation_file {wrong} is not a file (did you mean {right}?)"),
    ],
)
def test_evaluate_names_what_a_flag_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    (tmp_path / "validation.parquet").write_bytes(b"")
    wrong, right = tmp_path / "validaton.parquet", tmp_path / "validation.parquet"
    flags = [str(wrong) if flag == "VALIDATON_FILE" else flag for flag in flags]
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tiny_bert_folder()), "--max_eval_samples", "8", *flags])
    assert exit_info.value.code == 2
    assert message.format(wrong=wrong, right=right) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--method", "vote"], "--method vote does not apply to causal_lm snapshots; accepted: average"),
        (["--metrics", "accuracy"], "--metrics: metric 'accuracy' does not apply to causal_lm outputs"),
        (["--selection_metric", "f1"], "--selection_metric: metric 'f1' does not apply to causal_lm outputs"),
        (["--label_column", "tag"], "--label_column applies to labelled data; causal_lm snapshots are scored on the"),
    ],
)
def test_evaluate_refuses_options_the_snapshots_kind_cannot_use_before_reading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """A causal LM's Auto class decides its kind: the options are checked from the manifest, before the members are
    loaded (a member file here is corrupt, and its checksum is not reached) or the data read (the data file is no
    parquet); the accepted methods are the flag's own (`weighted` belongs to the chosen rows)."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(tiny_lm_folder(), folder)
    weights = next(folder.glob("cycle-*/model.safetensors"))
    weights.write_bytes(b"corrupt" + weights.read_bytes()[7:])
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(folder), "--validation_file", str(broken), *flags])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "broken" not in err and "corrupt" not in err, err


def test_a_run_whose_validation_text_was_cut_from_its_dataset_says_so_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """recipes/gpt2_pretrain.py on a dataset without a validation split reports on the end of its train split: the
    manifest says so (`eval_split` None), and the command names that text instead of failing in `datasets`."""
    import json
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(tiny_lm_folder(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["training"].update(
        dataset_name="someone/corpus",
        eval_split=None,
        validation_text="the last 10 % of the rows of someone/corpus's train split",
        max_eval_blocks=6,
    )
    (folder / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()  # the fixture folder's first build prints transformers' bars
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(folder)])
    assert exit_info.value.code == 2 and capsys.readouterr().err == (
        "hf-sgdr evaluate: error: the run reported on the last 10 % of the rows of someone/corpus's train split, "
        "which is no split of someone/corpus: pass --eval_split (e.g. 'train[90%:]' --max_eval_blocks 6, the run's "
        "text within rounding) or "
        "--validation_file\n"
    )


def test_a_local_dataset_that_is_not_here_is_named_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pushed manifest names the run's local dataset `./corpus`: where no such folder is, the command says to pass
    a copy instead of asking the Hub for `./corpus`; a mistyped local --dataset_name is named. Both before the
    members' checksums (a corrupt member would be reported otherwise)."""
    import json
    import shutil

    folder = tmp_path / "pushed"
    shutil.copytree(tiny_bert_folder(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["training"]["dataset_name"] = "./corpus"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    weights = next(folder.glob("cycle-*/model.safetensors"))
    weights.write_bytes(b"corrupt" + weights.read_bytes()[7:])
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    for flags, message in [
        ([], "the run trained on a local dataset, ./corpus (manifest.json training.dataset_name), and there is no "),
        (["--dataset_name", "./corpsu"], "--dataset_name ./corpsu: no such folder (a Hub dataset id is namespace/"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", str(folder), *flags])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "corrupt" not in err, err


def test_options_a_classifier_cannot_use_are_refused_before_its_members_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sequence classifiers (whose kind their config decides) in a local folder, and in a Hub repo whose cache holds
    the manifest and one config, no weights: a language-model option, or a local dataset that is not here, is refused
    from the manifest and the first config, before any member is downloaded or checksummed."""
    import shutil

    import huggingface_hub

    folder = tmp_path / "run"
    shutil.copytree(tiny_bert_folder(), folder)
    weights = next(folder.glob("cycle-*/model.safetensors"))
    weights.write_bytes(b"corrupt" + weights.read_bytes()[7:])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(folder), "--max_eval_blocks", "2"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--max_eval_blocks applies to language models" in err
    assert "corrupt" not in err, err

    manifest = json.loads((tiny_bert_folder() / "manifest.json").read_text())
    manifest["training"]["dataset_name"] = "./corpus"
    cache = tmp_path / "cache"
    first = manifest["snapshots"][0]["name"]
    config = (tiny_bert_folder() / first / "config.json").read_bytes()
    files = {"manifest.json": json.dumps(manifest).encode(), f"{first}/config.json": config}
    cache_layout(files, cache, "me/pushed")  # no weights: a load would fail on them
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    for flags, message in [
        (["--max_eval_blocks", "2"], "--max_eval_blocks applies to language models, not to classification"),
        ([], "the run trained on a local dataset, ./corpus (manifest.json training.dataset_name), and there is no "),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", "me/pushed", *flags])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err, err


def test_evaluate_refuses_a_block_limit_for_classification_snapshots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tiny_bert_folder()), "--validation_file", str(broken), "--max_eval_blocks", "2"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--max_eval_blocks applies to language models, not to classification" in err


def test_evaluate_says_which_kinds_it_builds_data_for(capsys: pytest.CaptureFixture[str]) -> None:
    """A kind with no data layout (token classification) is refused before any data is read."""
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tiny_token_folder()), "--dataset_name", "no-such/dataset", "--max_eval_samples", "8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "for token_classification snapshots build the dataloader yourself" in err and "no-such" not in err


def test_commands_plug_into_another_parser() -> None:
    parser = argparse.ArgumentParser(prog="hf-sgdr")
    add_snapshot_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["push", "out", "--repo-id", "me/x", "--create-pr"])
    assert (args.command, args.repo_id, args.create_pr, args.private) == ("push", "me/x", True, None)
    assert callable(args.handler)
    args = parser.parse_args(["evaluate", "out", "--metrics", "accuracy", "f1"])
    assert args.metrics == ["accuracy", "f1"] and args.eval_split == "validation" and callable(args.handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "out", "--method", "median"])


def _with_train_data(tmp_path: Path) -> Path:
    """The tiny BERT run, its manifest recording SST-2 train rows 0-95 as its data and 64-95 as held out."""
    from helpers.ensembles import copy_folder

    from hf_sgdr.snapshot_format.manifest import TRAIN_DATA_KEY, TrainData

    folder = copy_folder(tiny_bert_folder(), tmp_path / "snapshots")
    data = json.loads((folder / "manifest.json").read_text())
    record = TrainData("train", 96, tuple(range(64, 96)), dataset_name="nyu-mll/glue", dataset_config_name="sst2")
    data["training"][TRAIN_DATA_KEY] = record.to_dict()
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


def _evaluate(folder: Path, out: Path, *extra: str) -> dict:
    argv = ["evaluate", str(folder), "--max_eval_samples", "24", "--max_length", "32", "--output_json", str(out)]
    assert main([*argv, *extra]) == 0
    return json.loads(out.read_text())


def test_evaluate_chooses_on_the_held_out_slice_the_manifest_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _with_train_data(tmp_path)
    default = _evaluate(folder, tmp_path / "default.json")
    assert default["selection_split"] == "train_heldout"
    assert "chosen on train_heldout" in capsys.readouterr().out
    explicit = _evaluate(folder, tmp_path / "explicit.json", "--selection_split", "train[64:96]")
    assert "warning: --selection_split" not in capsys.readouterr().err  # the held-out rows themselves
    assert [row["kind"] for row in default["rows"]][-3:] == ["greedy_soup", "greedy_ensemble", "weighted_ensemble"]
    for ours, theirs in zip(default["rows"], explicit["rows"], strict=True):
        assert (ours["name"], ours["members"]) == (theirs["name"], theirs["members"])
        assert ours["metrics"] == pytest.approx(theirs["metrics"])
        assert ours.get("selection_metrics") == pytest.approx(theirs.get("selection_metrics"))


def test_evaluate_warns_when_the_selection_split_holds_training_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _with_train_data(tmp_path)
    _evaluate(folder, tmp_path / "leaky.json", "--selection_split", "train[40:80]", "--no_soups")
    err = capsys.readouterr().err
    assert "warning: --selection_split train[40:80] holds 24 of its 40 examples that the run trained on" in err
    assert "Omit --selection_split to choose on the held-out slice (train_heldout, 32 examples)" in err
    _evaluate(folder, tmp_path / "clean.json", "--selection_split", "train[300:332]", "--no_soups")
    assert "warning: --selection_split" not in capsys.readouterr().err


def test_a_missing_data_source_is_refused_before_any_checksum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import hf_sgdr.snapshot_format.digests as digests

    folder = tmp_path / "snapshots"
    shutil.copytree(tiny_bert_folder(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(task="my_task", training={})  # not a GLUE task, no dataset recorded
    (folder / "manifest.json").write_text(json.dumps(manifest))
    hashed: list[object] = []
    monkeypatch.setattr(digests, "sha256_range", lambda *piece: hashed.append(piece))
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", str(folder)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and hashed == []  # refused from the manifest alone
    assert f"pass a dataset name (--dataset_name) or a local file (--validation_file): the manifest of {folder}" in err
