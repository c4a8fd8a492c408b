"""Command-line user errors end in one line on stderr and exit status 2, naming the option and what it
accepts: never a traceback (bad numbers, an unknown or absent device, labels outside the model's classes, a
binary file given as data, a push that fails on the Hub's side or cannot connect, a report that is not one); a
missing optional package ends in one line and exit status 1, naming the extra that brings it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.ensembles import REPO_ROOT, tiny_bert_folder

from hf_sgdr.cli import main


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()  # what came before (a fixture folder built on first use prints transformers' bars)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--max_eval_samples", "0"], "argument --max_eval_samples: must be an integer >= 1; got '0'"),
        (["--max_eval_samples", "-1"], "argument --max_eval_samples: must be an integer >= 1; got '-1'"),
        (["--max_selection_samples", "0"], "argument --max_selection_samples: must be an integer >= 1"),
        (["--max_length", "-5"], "argument --max_length: must be an integer >= 1; got '-5'"),
        (["--max_length", "0"], "argument --max_length: must be an integer >= 1; got '0'"),
        (["--block_size", "0"], "argument --block_size: must be an integer >= 1"),
        (["--per_device_eval_batch_size", "x"], "argument --per_device_eval_batch_size: must be an integer >= 1"),
        (["--device", "nonsense"], "argument --device: must be a torch device such as cpu, cuda or cuda:0"),
        (["--device", "cuda:99"], "argument --device: 'cuda:99' is not available"),
    ],
)
def test_bad_evaluate_flags(
    flags: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _one_line_error(capsys, ["evaluate", str(tmp_path), *flags])
    assert err.startswith("hf-sgdr evaluate: error: ") and expected in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line_error(capsys, ["evaluate", str(tmp_path), "--device", "cuda"])
    assert "argument --device: 'cuda' is not available: this machine has 0 CUDA device(s); use cpu" in err


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`hf-sgdr` in a fresh process (the datasets library's own log handlers outlive pytest's capture)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    command = [sys.executable, "-m", "hf_sgdr.cli", *argv]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)


def _last_line_error(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The error line, which ends stderr (only the data library's progress bars may come before it)."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"hf-sgdr {command}: error: "), result.stderr
    return last


def test_labels_outside_the_models_classes(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("sentence,label\na fine film,1\na dull film,7\nso so,-1\n")
    err = _last_line_error(_run("evaluate", str(tiny_bert_folder()), "--validation_file", str(data)), "evaluate")
    assert f"--label_column label of {data} holds 2 label(s) outside the model's classes (-1, 7)" in err
    assert "integers in [0, 1] for a model with 2 labels" in err


def test_the_library_refuses_labels_outside_the_classes_by_name() -> None:
    from helpers.ensembles import tokenizer

    from hf_sgdr.data import text_dataloader
    from hf_sgdr.snapshots import SnapshotEnsemble

    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    loader = text_dataloader(tokenizer(), ["a fine film", "a dull film"], labels=[1, 7])
    with pytest.raises(ValueError, match=r"outside the model's classes \(7\): labels must be integers in \[0, 1\]"):
        ensemble.evaluate(loader, soups=False)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_binary_file_given_as_data(tmp_path: Path, suffix: str) -> None:
    data = tmp_path / f"data{suffix}"
    data.write_bytes(bytes(range(256)) * 8)
    err = _last_line_error(_run("evaluate", str(tiny_bert_folder()), "--validation_file", str(data)), "evaluate")
    assert f"--validation_file {data} cannot be read as {suffix} data" in err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_push_that_cannot_connect() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    result = _run("push", str(tiny_bert_folder()), "--repo-id", "me/x", HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="0")
    err = _last_line_error(result, "push")
    assert "the push to me/x failed: " in err and "onnect" in err


def _without(tmp_path: Path, package: str) -> str:
    """A PYTHONPATH entry under which `import package` fails as for a package that is not installed (a stand-in
    for an environment without it: the import system raises the same ModuleNotFoundError)."""
    shadow = tmp_path / "without" / package
    shadow.mkdir(parents=True)
    message = f"No module named {package!r}"
    (shadow / "__init__.py").write_text(f"raise ModuleNotFoundError({message!r}, name={package!r})")
    return str(shadow.parent)


@pytest.mark.parametrize(
    ("package", "argv", "expected"),
    [
        ("datasets", ["evaluate", "{folder}", "--validation_file", "{data}"], "this needs datasets, which is not "
         "installed: pip install 'hf-sgdr[recipes]'"),
        ("datasets", ["evaluate", "{folder}", "--dataset_name", "nyu-mll/glue"], "this needs datasets, which is not "
         "installed: pip install 'hf-sgdr[recipes]'"),
        ("matplotlib", ["plot", "--T_0", "10", "--num_training_steps", "40"], "plotting needs matplotlib: pip install "
         "'hf-sgdr[plot]'"),
    ],
)  # fmt: skip
def test_a_missing_optional_package_is_one_line_naming_its_extra(
    tmp_path: Path, package: str, argv: list[str], expected: str
) -> None:
    data = tmp_path / "data.csv"
    data.write_text("sentence,label\na fine film,1\n")
    argv = [arg.format(folder=tiny_bert_folder(), data=data) for arg in argv]
    result = _run(*argv, PYTHONPATH=os.pathsep.join([_without(tmp_path, package), str(REPO_ROOT)]))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"hf-sgdr {argv[0]}: error: {expected}"


def test_a_file_given_as_the_snapshot_folder_is_named_as_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file is not a folder without a manifest, and `notes.txt/x` is not a Hub repo id to look up."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    err = _one_line_error(capsys, ["evaluate", str(notes)])
    assert (
        err
        == f"hf-sgdr evaluate: error: {notes} is a file: give a folder (a snapshot folder or a training output_dir)\n"
    )
    err = _one_line_error(capsys, ["evaluate", str(notes / "x")])
    assert err == f"hf-sgdr evaluate: error: {notes / 'x'}: {notes} is a file, not a folder (nor a Hub namespace)\n"


def test_evaluate_refuses_an_output_json_it_could_not_write_before_evaluating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report path through a file, or in a folder that does not exist, is one line naming --output_json before any
    snapshot is loaded; a mistyped folder is not created (as `plot` does)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    evaluate = ["evaluate", str(tiny_bert_folder()), "--output_json"]
    err = _one_line_error(capsys, [*evaluate, str(notes / "r.json")])
    assert err.startswith(f"hf-sgdr evaluate: error: --output_json {notes / 'r.json'}: {notes} is a file, not a ")
    err = _one_line_error(capsys, [*evaluate, str(tmp_path / "missing" / "r.json")])
    assert f"the folder of --output_json {tmp_path / 'missing' / 'r.json'} does not exist" in err
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "is not a file; give a report written by `hf-sgdr evaluate --output_json`"),
        ('{"a": 1}', "is not a report written by `hf-sgdr evaluate --output_json` or EvaluationReport.save_json "
         "(TypeError: "),
        (b"PAR1\xff\xfe", "is not a report written by `hf-sgdr evaluate --output_json` or "
         "EvaluationReport.save_json (UnicodeDecodeError: "),
    ],
)  # fmt: skip
def test_push_refuses_a_results_file_that_is_not_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, expected: str
) -> None:
    results = tmp_path / "results.json"
    if isinstance(content, str):
        results.write_text(content)
    elif content is not None:
        results.write_bytes(content)
    err = _one_line_error(capsys, ["push", str(tiny_bert_folder()), "--repo-id", "me/x", "--results", str(results)])
    assert err.startswith(f"hf-sgdr push: error: --results: {results} {expected}"), err
