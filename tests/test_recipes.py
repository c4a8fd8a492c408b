"""The recipes end to end, run as a user runs them (a subprocess), on real data slices."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.hub import TOKEN, Recorder
from helpers.metrics import write_metric_script
from helpers.training import assert_clean_exit, launch_two_cpu_processes
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from hf_sgdr import SGDRSchedule
from hf_sgdr.cli import main as cli_main
from hf_sgdr.snapshots import SnapshotManifest

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO / "recipes" / "glue.py"
GPT2 = REPO / "recipes" / "gpt2_pretrain.py"
FAST = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(script: Path, *flags: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(script), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, **FAST},
        timeout=900,
        cwd=cwd,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script.name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def train_log(output_dir: Path) -> dict[int, dict]:
    """The record of every step."""
    records = {}
    for line in (output_dir / "train_log.jsonl").read_text().splitlines():
        record = json.loads(line)
        records[record["step"]] = record
    return records


def results(output_dir: Path, name: str = "ensemble_results.json") -> dict:
    return json.loads((output_dir / name).read_text())


def row(report: dict, name: str) -> dict:
    return next(r for r in report["rows"] if r["name"] == name)


GLUE_SMALL = (
    "--max_train_samples", "192", "--max_eval_samples", "48", "--selection_size", "32",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32", "--max_length", "32",
    "--learning_rate", "1e-4",
)  # fmt: skip


GLUE_SST2_RUN = ("--task_name", "sst2", *GLUE_SMALL, "--max_train_steps", "12", "--gradient_accumulation_steps", "2",
                 "--num_cycles", "3", "--T_mult", "1", "--warmup_steps", "2", "--eta_min", "1e-6",
                 "--restart_from", "first")  # fmt: skip


@pytest.fixture(scope="module")
def sst2_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, 12 optimizer steps of 2 micro-batches, 3 cycles fitted to the budget after 2 warmup steps,
    star restarts (every later cycle from the first cycle's end)."""
    out = tmp_path_factory.mktemp("sst2") / "out"
    run(GLUE, "--output_dir", str(out), *GLUE_SST2_RUN)
    return out


def test_glue_sst2_end_to_end(sst2_run: Path) -> None:
    out = sst2_run
    schedule = SGDRSchedule.fit_budget(12, 3, warmup_steps=2, eta_min=1e-6)
    ends = schedule.cycle_ends(12)
    manifest = SnapshotManifest.load(out / "snapshots")
    assert [r.scheduler_step for r in manifest.snapshots] == ends == [2 + 3, 2 + 6, 12]
    assert [r.global_step for r in manifest.snapshots] == ends
    assert all(r.eval_metrics and 0.0 <= r.eval_metrics["eval_accuracy"] <= 1.0 for r in manifest.snapshots)
    assert manifest.training["gradient_accumulation_steps"] == 2 and manifest.task == "sst2"
    assert manifest.training["per_device_train_batch_size"] == 8 and manifest.training["seed"] == 42
    assert manifest.training["restart_from"] == "first" and manifest.training["reset_optimizer_state"] is True
    # One log line per optimizer step (not per micro-batch), each with the schedule's lr for that step.
    log = train_log(out)
    assert sorted(log) == list(range(1, 13))
    for step, record in log.items():
        assert record["lr"] == pytest.approx(schedule.lr(step - 1, 1e-4), rel=1e-9, abs=1e-15)
    report = results(out)
    names = [r["name"] for r in report["rows"]]
    assert names[:3] == ["cycle-000", "cycle-001", "cycle-002"]
    assert {"uniform soup", "greedy soup", "greedy ensemble selection"} <= set(names)
    assert report["eval_split"] == "validation" and report["selection_split"] == "train_heldout"
    assert report["num_eval_items"] == 48
    # The last snapshot evaluated alone agrees with the recipe's own in-training evaluation.
    last = manifest.snapshots[-1]
    assert row(report, last.name)["metrics"]["accuracy"] == pytest.approx(last.eval_metrics["eval_accuracy"])
    assert (out / "lr_schedule.png").stat().st_size > 10_000


def test_glue_records_its_held_out_slice_and_the_cli_chooses_on_it(sst2_run: Path, capsys) -> None:
    from hf_sgdr.cli import main
    from hf_sgdr.snapshot_format.manifest import TrainData

    manifest = SnapshotManifest.load(sst2_run / "snapshots")
    train_data = TrainData.from_training(manifest.training)
    assert (train_data.dataset_name, train_data.dataset_config_name, train_data.split) == (
        "nyu-mll/glue",
        "sst2",
        "train",
    )
    assert train_data.rows_used == 192 and len(set(train_data.held_out)) == 32
    argv = ["evaluate", str(sst2_run), "--max_eval_samples", "48", "--max_length", "32", "--output_json"]
    assert main([*argv, str(sst2_run / "cli.json")]) == 0  # no --selection_split: the recorded held-out slice
    cli, recipe = results(sst2_run, "cli.json"), results(sst2_run)
    assert cli["selection_split"] == recipe["selection_split"] == "train_heldout"
    for name in ("greedy soup", "greedy ensemble selection"):  # chosen on the same 32 sentences
        assert row(cli, name)["members"] == row(recipe, name)["members"]
        assert row(cli, name)["selection_metrics"] == pytest.approx(row(recipe, name)["selection_metrics"])
    assert main([*argv, str(sst2_run / "leaky.json"), "--selection_split", "train[:100]", "--no_soups"]) == 0
    assert "holds 84 of its 100 examples that the run trained on" in capsys.readouterr().err
    # Without --max_eval_samples: the run's own 48 examples (recorded in the manifest), the table the recipe printed.
    assert manifest.training["max_eval_samples"] == 48 and manifest.training["eval_split"] == "validation"
    plain = ["evaluate", str(sst2_run), "--max_length", "32", "--output_json", str(sst2_run / "plain.json")]
    assert main(plain) == 0
    assert "reporting on the first 48 examples of validation, as the run did" in capsys.readouterr().err
    again = results(sst2_run, "plain.json")
    assert again["num_eval_items"] == recipe["num_eval_items"] == 48
    assert row(again, "ensemble (last 3, average)")["metrics"] == pytest.approx(
        row(recipe, "ensemble (last 3, average)")["metrics"], rel=1e-4
    )


@pytest.mark.multiprocess
def test_two_processes_match_one_process(tmp_path: Path, sst2_run: Path) -> None:
    """`accelerate launch` with 2 CPU processes: the same lr at every optimizer step, the same snapshot steps,
    snapshots written once, evaluation gathered without duplicates, and both processes exit 0."""
    out = tmp_path / "two"
    result = launch_two_cpu_processes(str(GLUE), "--output_dir", str(out), *GLUE_SST2_RUN, env=FAST, timeout=900)
    assert_clean_exit(result)
    manifest = SnapshotManifest.load(out / "snapshots")
    single = SnapshotManifest.load(sst2_run / "snapshots")
    assert manifest.training["num_processes"] == 2 and single.training["num_processes"] == 1
    assert manifest.training["restart_from"] == "first"  # star restarts on every rank alike
    assert [r.scheduler_step for r in manifest.snapshots] == [r.scheduler_step for r in single.snapshots]
    assert [r.global_step for r in manifest.snapshots] == [r.global_step for r in single.snapshots]
    assert sorted(p.name for p in (out / "snapshots").iterdir() if p.is_dir()) == [r.name for r in manifest.snapshots]
    two, one = train_log(out), train_log(sst2_run)
    assert sorted(two) == sorted(one) == list(range(1, 13))
    assert [two[step]["lr"] for step in two] == [one[step]["lr"] for step in two]
    assert results(out)["num_eval_items"] == 48  # 48 examples over 2 processes, uneven last batch, no duplicates


def test_rte_sentence_pairs_with_lora(tmp_path: Path) -> None:
    out = tmp_path / "rte"
    run(GLUE, "--task_name", "rte", "--output_dir", str(out), *GLUE_SMALL, "--max_train_steps", "8",
        "--num_cycles", "2", "--lora_r", "4", "--learning_rate", "1e-3")  # fmt: skip
    manifest = SnapshotManifest.load(out / "snapshots")
    assert manifest.snapshot_type == "peft_adapter" and len(manifest.snapshots) == 2
    files = set(manifest.snapshots[0].files)
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    adapter = load_file(out / "snapshots" / "cycle-000" / "adapter_model.safetensors")
    assert all("lora_" in k or "classifier" in k for k in adapter)  # the adapter and the head, not the base
    assert row(results(out), "uniform soup")["metrics"]["accuracy"] >= 0.0


def test_custom_regression_files(tmp_path: Path, shared_data: Path, capsys) -> None:
    """An STS-B-shaped task (sentence pairs with a real-valued label) from tab-separated files. `hf-sgdr evaluate`
    on the run, with no data flags, reads its validation file, columns and max_length and prints its table; choosing
    on its training file is warned about; a resume with another seed ends in one line before training."""
    import pandas as pd

    sentences = pd.read_parquet(shared_data / "glue" / "sst2" / "validation.parquet")["sentence"].tolist()
    for name, start in (("train", 0), ("dev", 300)):
        with open(tmp_path / f"{name}.tsv", "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(["sentence1", "sentence2", "label"])
            for i in range(start, start + (240 if name == "train" else 60)):
                a, b = sentences[i], sentences[(i * 7 + 3) % len(sentences)]
                overlap = len(set(a.split()) & set(b.split())) / max(1, len(set(a.split()) | set(b.split())))
                writer.writerow([a, b if i % 3 else a, 5.0 if i % 3 == 0 else round(5 * overlap, 3)])
    out = tmp_path / "out"
    flags = ["--train_file", str(tmp_path / "train.tsv"), "--validation_file", str(tmp_path / "dev.tsv"),
             "--output_dir", str(out), *GLUE_SMALL, "--max_train_steps", "8", "--num_cycles", "2"]  # fmt: skip
    run(GLUE, *flags, "--checkpointing_steps", "4")
    report = results(out)
    assert report["kind"] == "regression" and report["metrics"][:2] == ["pearson", "spearman"]
    assert all(math.isfinite(r["metrics"]["pearson"]) for r in report["rows"])

    assert cli_main(["evaluate", str(out), "--output_json", str(out / "cli.json")]) == 0
    notes = capsys.readouterr().err
    assert f"reporting on the run's validation file {tmp_path / 'dev.tsv'}" in notes
    assert "--max_length 32, as the run did" in notes and "choosing on train_heldout" in notes
    cli = results(out, "cli.json")
    assert [r["name"] for r in cli["rows"]] == [r["name"] for r in report["rows"]]
    for cli_row, recipe_row in zip(cli["rows"], report["rows"], strict=True):
        assert cli_row["metrics"] == pytest.approx(recipe_row["metrics"], rel=1e-5)
    chosen_on_training = ["evaluate", str(out), "--selection_file", str(tmp_path / "train.tsv"), "--no_soups"]
    assert cli_main([*chosen_on_training, "--max_selection_samples", "40"]) == 0
    assert f"--selection_file {tmp_path / 'train.tsv'} holds " in capsys.readouterr().err

    resumed = run(GLUE, *flags, "--seed", "7", "--resume_from_checkpoint", "latest", check=False)
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    assert resumed.stderr.strip().splitlines()[-1].startswith(f"glue.py: error: resuming in {out / 'snapshots'}: ")
    assert "(seed 7 where 42 was recorded; " in resumed.stderr


@pytest.mark.parametrize("script", [GLUE, GPT2], ids=["glue", "gpt2_pretrain"])
def test_recipe_help_lists_the_task_run_and_schedule_flags(script: Path) -> None:
    """`--help` formats every help string (a bare `%` in one made argparse raise) and shows each flag family."""
    result = run(script, "--help")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    for flag in ("--output_dir", "--num_cycles", "--per_device_train_batch_size"):
        assert flag in result.stdout
    if script == GPT2:
        assert "% of the training text held out" in " ".join(result.stdout.split())  # unwrapped


LM_TEXT_LINES = 600


@pytest.fixture
def shakespeare(tmp_path: Path, shared_data: Path) -> Path:
    """A slice of Tiny Shakespeare (in the test's temporary folder, not the repository)."""
    lines = (shared_data / "lm" / "tinyshakespeare.txt").read_text().splitlines()[:LM_TEXT_LINES]
    path = tmp_path / "shakespeare.txt"
    path.write_text("\n".join(lines))
    return path


def _gpt2_flags(text: Path, out: Path) -> list[str]:
    return ["--train_file", str(text), "--output_dir", str(out), "--block_size", "32", "--vocab_size", "300",
            "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--max_train_steps", "18",
            "--num_cycles", "3", "--learning_rate", "3e-3", "--checkpointing_steps", "5"]  # fmt: skip


def test_gpt2_pretraining_end_to_end(tmp_path: Path, shakespeare: Path, capsys) -> None:
    out = tmp_path / "gpt2"
    run(GPT2, *_gpt2_flags(shakespeare, out))
    manifest = SnapshotManifest.load(out / "snapshots")
    assert manifest.auto_class == "AutoModelForCausalLM" and [r.scheduler_step for r in manifest.snapshots] == [
        6,
        12,
        18,
    ]
    assert (out / "snapshots" / "tokenizer.json").is_file()  # the tokenizer trained on the text is saved
    assert manifest.training["per_device_train_batch_size"] == 8 and manifest.training["seed"] == 42
    report = results(out)
    assert report["metrics"][0] == "perplexity"
    last = manifest.snapshots[-1]
    assert row(report, last.name)["metrics"]["perplexity"] == pytest.approx(
        last.eval_metrics["eval_perplexity"], rel=1e-4
    )
    for name in ("ensemble (last 3, average)", "uniform soup"):
        assert 1.0 < row(report, name)["metrics"]["perplexity"] < 300  # vocabulary 300: better than uniform
    assert sorted(p.name for p in out.glob("step_*")) == ["step_10", "step_15", "step_5"]
    # The validation text was cut from the training file: the command cannot rebuild it, and says what it was.
    assert manifest.training["validation_text"] == "the last 10 % of the paragraphs of shakespeare.txt"
    with pytest.raises(SystemExit):
        cli_main(["evaluate", str(out)])
    assert "names no dataset (the run reported on the last 10 % of the paragraphs of shakespeare.txt)" in (
        capsys.readouterr().err
    )


def test_hf_sgdr_evaluate_reports_on_what_a_gpt2_run_did(
    tmp_path: Path, shared_data: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run on a dataset with a validation split records the dataset, its block size, its block limit and the
    training blocks it held out: `hf-sgdr evaluate` on the run, with no data flags, scores the same blocks, chooses
    on the same held-out blocks, and prints the run's table, every row."""
    lines = (shared_data / "lm" / "tinyshakespeare.txt").read_text().splitlines()[:LM_TEXT_LINES]
    data = tmp_path / "corpus"  # a local dataset folder: the `text` builder, one split per file, as the Hub's
    data.mkdir()
    (data / "train.txt").write_text("\n".join(lines[:500]))
    (data / "validation.txt").write_text("\n".join(lines[500:]))
    out = tmp_path / "gpt2"
    flags = _gpt2_flags(data / "train.txt", out)
    flags[:2] = ["--dataset_name", "corpus"]  # relative to the run's folder: recorded resolved
    run(GPT2, *flags, "--max_eval_blocks", "6", cwd=tmp_path)
    training = SnapshotManifest.load(out / "snapshots").training
    assert (training["dataset_name"], training["block_size"], training["max_eval_blocks"]) == (
        str(data.resolve()),
        32,
        6,
    )
    assert "validation_text" not in training
    held_out = training["train_blocks"]["held_out"]
    assert len(held_out) == len(set(held_out)) >= 1 and training["train_blocks"]["rows_used"] > max(held_out)
    assert cli_main(["evaluate", str(out), "--output_json", str(out / "cli.json")]) == 0
    notes = capsys.readouterr().err
    assert "blocks of 32 tokens, as the run cut them" in notes
    assert "reporting on the first 6 blocks of validation, as the run did" in notes
    assert "choosing on train_heldout" in notes
    cli, recipe = results(out, "cli.json"), results(out)
    assert cli["num_eval_items"] == recipe["num_eval_items"] == 6
    assert [r["name"] for r in cli["rows"]] == [r["name"] for r in recipe["rows"]]
    for cli_row, recipe_row in zip(cli["rows"], recipe["rows"], strict=True):  # the chosen rows too
        assert cli_row["members"] == recipe_row["members"]
        assert cli_row["metrics"] == pytest.approx(recipe_row["metrics"], rel=1e-5)
        chosen_on = recipe_row["selection_metrics"]
        assert cli_row["selection_metrics"] == (pytest.approx(chosen_on, rel=1e-5) if chosen_on else chosen_on)
    # Naming the run's own dataset, relative to where the command runs, is still the run's data: the same 6 blocks,
    # the same held-out blocks.
    monkeypatch.chdir(tmp_path)
    named = ["evaluate", str(out), "--dataset_name", "corpus", "--output_json", str(out / "named.json")]
    assert cli_main(named) == 0
    notes = capsys.readouterr().err
    assert "reporting on the first 6 blocks of validation" in notes and "choosing on train_heldout" in notes
    assert results(out, "named.json")["rows"] == cli["rows"]
    # The run's own text column named is still the run's blocks; another block size is not the run's data.
    text = ["evaluate", str(out), "--text_columns", "text", "--no_soups", "--output_json", str(out / "text.json")]
    assert cli_main(text) == 0 and "choosing on train_heldout" in capsys.readouterr().err
    other = ["evaluate", str(out), "--block_size", "16", "--no_soups", "--selection_split", "train"]
    assert cli_main([*other, "--output_json", str(out / "other.json")]) == 0
    notes = capsys.readouterr().err
    assert "as the run did" not in notes
    trained = re.search(r"--selection_split train holds text of (\d+) blocks that the run trained on", notes)
    assert trained and int(trained[1]) == training["train_blocks"]["rows_used"] - len(held_out), notes
    # A limit of its own, in blocks as the run's: the first 3 of the same blocks.
    fewer = ["evaluate", str(out), "--max_eval_blocks", "3", "--no_soups", "--output_json", str(out / "fewer.json")]
    assert cli_main(fewer) == 0
    assert "reporting on the first" not in capsys.readouterr().err
    assert results(out, "fewer.json")["num_eval_items"] == 3
    # As pushed (the manifest names the dataset `./corpus`), evaluated elsewhere on a copy of that folder: the copy
    # is the run's data, with its limits and held-out blocks.
    from hf_sgdr.snapshots.hub import public_manifest

    pushed = tmp_path / "pushed"
    shutil.copytree(out / "snapshots", pushed)
    public_manifest(SnapshotManifest.load(pushed))[0].save(pushed)
    assert SnapshotManifest.load(pushed).training["dataset_name"] == "./corpus"
    copy = tmp_path / "elsewhere" / "corpus"
    shutil.copytree(data, copy)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where no ./corpus is: the flag names the copy
    mine = ["evaluate", str(pushed), "--dataset_name", str(copy), "--output_json", str(tmp_path / "mine.json")]
    assert cli_main(mine) == 0
    notes = capsys.readouterr().err
    assert "reporting on the first 6 blocks of validation" in notes and "choosing on train_heldout" in notes
    assert results(tmp_path, "mine.json")["rows"] == cli["rows"]


@pytest.mark.multiprocess
def test_gpt2_cycle_evaluation_on_two_processes_equals_the_table(tmp_path: Path, shared_data: Path) -> None:
    """6 validation blocks over 2 processes and batches of 16: Accelerate pads the ranks' batches with duplicates.
    The per-cycle NLL counts each block once, as the ensemble table does (a batch mean repeated per block carried
    the duplicates in)."""
    lines = (shared_data / "lm" / "tinyshakespeare.txt").read_text().splitlines()[:LM_TEXT_LINES]
    data = tmp_path / "corpus"
    data.mkdir()
    (data / "train.txt").write_text("\n".join(lines[:500]))
    (data / "validation.txt").write_text("\n".join(lines[500:]))
    out = tmp_path / "two"
    flags = _gpt2_flags(data / "train.txt", out)
    flags[:2] = ["--dataset_name", str(data)]
    result = launch_two_cpu_processes(str(GPT2), *flags, "--max_eval_blocks", "6", env=FAST, timeout=600)
    assert_clean_exit(result)
    manifest, report = SnapshotManifest.load(out / "snapshots"), results(out)
    assert manifest.training["num_processes"] == 2 and report["num_eval_items"] == 6
    for snapshot in manifest.snapshots:
        expected = row(report, snapshot.name)["metrics"]["perplexity"]
        assert snapshot.eval_metrics["eval_perplexity"] == pytest.approx(expected, rel=1e-5)


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path: Path, shakespeare: Path) -> None:
    reference = tmp_path / "reference"
    run(GPT2, *_gpt2_flags(shakespeare, reference))

    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(GPT2), *_gpt2_flags(shakespeare, out)],
        env={**os.environ, **FAST},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not (out / "step_10").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / "step_10").is_dir() and not (out / "ensemble_results.json").exists()

    run(GPT2, *_gpt2_flags(shakespeare, out), "--resume_from_checkpoint", "latest")
    logged = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 19))  # the steps after the checkpoint written again, once
    expected, got = train_log(reference), train_log(out)
    assert sorted(got) == sorted(expected) == list(range(1, 19))
    for step in expected:
        assert got[step]["lr"] == expected[step]["lr"]
        assert got[step]["loss"] == expected[step]["loss"]  # same batches and dropout masks after the resume
    ref_manifest = SnapshotManifest.load(reference / "snapshots")
    manifest = SnapshotManifest.load(out / "snapshots")
    assert [r.scheduler_step for r in manifest.snapshots] == [r.scheduler_step for r in ref_manifest.snapshots]
    for record in ref_manifest.snapshots:
        a = load_file(reference / "snapshots" / record.name / "model.safetensors")
        b = load_file(out / "snapshots" / record.name / "model.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(b[key], a[key]), key


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--task_name", "sst3"], "--task_name must be one of"),
        (["--train_file", "/nonexistent.csv", "--validation_file", "/nonexistent.csv"], "does not exist"),
        (["--task_name", "sst2", "--T_0", "10", "--num_cycles", "3"], "give at most one of"),
        (["--task_name", "sst2", "--T_mult", "0.5"], "sgdr_T_mult must be a finite number in [1, 1000]"),
        (["--task_name", "sst2", "--checkpointing_steps", "often"], "--checkpointing_steps must be"),
    ],
)
def test_bad_flags_exit_with_a_clear_message(tmp_path: Path, flags: list[str], message: str) -> None:
    result = run(GLUE, "--output_dir", str(tmp_path), *flags, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_cpu_launch_that_starts_one_of_several_processes_is_warned_about(tmp_path: Path) -> None:
    """`accelerate launch --cpu --num_processes 2` runs the script once: the recipes say so and how to get two;
    launched for one process, they say nothing."""
    script = tmp_path / "start.py"
    script.write_text(
        f"import sys; sys.path.insert(0, {str(REPO / 'recipes')!r})\n"
        "from common import RunArguments, make_accelerator\n"
        f"print('processes', make_accelerator(RunArguments(output_dir={str(tmp_path / 'out')!r})).num_processes)\n"
    )
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_machines", "1", "--dynamo_backend"]
    launch += ["no", "--mixed_precision", "no"]
    for processes, warned in (("2", True), ("1", False)):
        result = subprocess.run(
            [*launch, "--num_processes", processes, str(script)], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0 and "processes 1" in result.stdout, result.stderr
        assert ("was asked for several processes (--num_processes) but started one" in result.stderr) is warned
        assert ("ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N" in result.stderr) is warned


def test_recipe_logging_prints_each_hub_line_once() -> None:
    """A run without network logs the Hub's retries; with the recipe's root handler each printed twice."""
    code = (
        "import logging, sys; sys.path.insert(0, 'recipes'); from common import configure_logging\n"
        "import huggingface_hub.utils._http  # what datasets and transformers load: the Hub's own handler\n"
        "configure_logging(True)\n"
        "logging.getLogger('huggingface_hub.utils._http').warning('Retrying in 1s [Retry 1/5].')\n"
        "logging.getLogger('hf_sgdr.training.cycle_end').info('SGDR cycle 0 ended')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stderr.count("Retrying in 1s [Retry 1/5].") == 1
    assert re.search(r"^\S+ \S+ INFO hf_sgdr\.training\.cycle_end: SGDR cycle 0 ended$", result.stderr, re.MULTILINE)


CONFIGS = sorted((REPO / "recipes" / "configs").glob("*.json"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_parses_and_ends_on_a_cycle_end(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped configs are valid flags for their recipe, and their budget is a whole number of cycles."""
    monkeypatch.chdir(REPO)  # the CPU presets name ../shared/data relative to the checkout
    monkeypatch.syspath_prepend(str(REPO / "recipes"))
    import common
    from glue import GlueArguments
    from gpt2_pretrain import LMArguments
    from hf_sgdr.schedule import build_schedule

    task_arguments = GlueArguments if config.stem.startswith("glue") else LMArguments
    _, run_args, options = common.parse_arguments(task_arguments, ["--config", str(config)])
    schedule = build_schedule(
        num_training_steps=run_args.max_train_steps,
        warmup_steps=run_args.warmup_steps,
        **options.scheduler_kwargs(),
    )
    ends = schedule.cycle_ends(run_args.max_train_steps)
    assert ends[-1] == run_args.max_train_steps and len(ends) >= 3
    if config.stem.endswith("_star"):  # one long cycle, then short ones from its end at half its peak
        assert options.restart_from == "first" and [schedule.cycle_length(i) for i in range(5)] == [124, 46, 46, 46, 47]
        return
    named = re.fullmatch(r".*_T0-(\d+)(k?)_Tmult-(\d+)", config.stem)  # the file name states the schedule
    assert named is not None
    assert options.sgdr_T_0 == int(named[1]) * (1000 if named[2] else 1)
    assert options.sgdr_T_mult == float(named[3])


def test_recipe_path_flags_expand_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--train_file=~/train.csv` (a shell leaves `~` after `=`), a quoted `~` and a config's `~` name files in the
    home folder, as `hf-sgdr`'s path flags do."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.syspath_prepend(str(REPO / "recipes"))
    import common
    from glue import GlueArguments

    for name in ("train.csv", "dev.csv"):
        (tmp_path / name).write_text("sentence,label\na,0\nb,1\n")
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"output_dir": "~/out"}))
    flags = ["--train_file=~/train.csv", "--validation_file", "~/dev.csv", "--config", str(config)]
    glue_args, run_args, _ = common.parse_arguments(GlueArguments, flags)
    assert (glue_args.train_file, glue_args.validation_file) == (str(tmp_path / "train.csv"), str(tmp_path / "dev.csv"))
    assert run_args.output_dir == str(tmp_path / "out")


def test_a_missing_late_import_stops_the_recipe_before_training(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """matplotlib is imported only for the plot at the end of a run: without it the recipe exits at once,
    naming the extra to install, not after all its training."""
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(REPO / "recipes"))
    import common
    from glue import GlueArguments

    config = ["--config", str(REPO / "recipes" / "configs" / "glue_cpu_5ep_T0-63_Tmult-1.json")]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the recipes extra looks like
    with pytest.raises(SystemExit) as exited:
        common.parse_arguments(GlueArguments, config)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "missing matplotlib for the lr plot" in err
    assert "pip install 'hf-sgdr[recipes]'" in err and "--save_snapshots false" in err
    _, _, options = common.parse_arguments(GlueArguments, [*config, "--save_snapshots", "false"])
    assert options.save_snapshots is False  # no snapshots, no plot: nothing missing


def test_push_to_hub_and_tracking_with_a_token_that_is_never_written(
    tmp_path: Path, shared_data: Path, hub: tuple[str, Recorder]
) -> None:
    """`--push_to_hub` sends the ensemble in one commit through huggingface_hub's real HTTP client (to the
    local recording endpoint: there is no Hub here); the token given by flag is in no output or tracker log.
    The final report is scored by an `evaluate` module (`--evaluate_metric`, a local script) and reaches the
    TensorBoard run with the lr plot."""
    import pandas as pd
    from huggingface_hub import snapshot_download

    endpoint, recorder = hub
    frame = pd.read_parquet(shared_data / "glue" / "sst2" / "validation.parquet")
    frame.iloc[:200].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[200:260].to_csv(tmp_path / "dev.csv", index=False)
    model = snapshot_download("sentence-transformers/all-MiniLM-L6-v2")  # a local folder: no Hub call to load
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(GLUE), "--model_name_or_path", model, "--train_file", str(tmp_path / "train.csv"),
         "--validation_file", str(tmp_path / "dev.csv"), "--output_dir", str(out), *GLUE_SMALL,
         "--max_train_steps", "6", "--num_cycles", "2", "--with_tracking", "--report_to", "tensorboard",
         "--push_to_hub", "--hub_model_id", "me/sst2-sgdr", "--hub_token", TOKEN,
         "--evaluate_metric", str(write_metric_script(tmp_path))],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, **FAST, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    (commit,) = recorder.commits
    assert commit["repo"] == "me/sst2-sgdr" and not recorder.unexpected
    assert {"README.md", "manifest.json", "cycle-000/model.safetensors", "cycle-001/model.safetensors"} <= set(
        commit["files"]
    )
    card = commit["files"]["README.md"].decode()
    assert "uniform soup" in card and "cycle-001" in card
    assert all(headers.get("authorization") == f"Bearer {TOKEN}" for _, _, headers, _ in recorder.requests)
    assert TOKEN not in result.stdout + result.stderr
    for path in out.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path
    assert all(TOKEN.encode() not in content for content in commit["files"].values())

    assert results(out)["metrics"] == ["accuracy", "nll", "brier", "ece"]  # the module's accuracy; no built-in f1
    run = out / "glue_custom"  # the tracker's run (recipes/glue.py tracker_name); its hparams go to a subfolder
    events = EventAccumulator(str(run), size_guidance={"tensors": 0, "images": 0}).Reload()
    assert [e.step for e in events.Scalars("sgdr/restart")] == [3, 6]  # the training scalars, same run
    (text,) = events.Tensors("sgdr/ensemble_report/text_summary")
    table = tensor_util.make_ndarray(text.tensor_proto).item().decode()
    assert "| forward passes | accuracy | nll | brier | ece |" in table and "| uniform soup |" in table
    (image,) = events.Images("sgdr/lr_schedule")
    # The lr (9 x 4 in) and a panel of 1.6 in for each of accuracy and NLL, at 110 dpi.
    assert (image.step, image.width, image.height) == (text.step, 990, 792) == (6, 990, 792)
