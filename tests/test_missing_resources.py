"""A model or dataset that cannot be loaded (not in the offline cache, no network, a typo) ends the recipes and
`hf-sgdr evaluate` with one line that says what is missing and how to get it, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.ensembles import tiny_bert_folder

import hf_sgdr
from hf_sgdr.missing_resources import ResourceNotFoundError, explain_missing, missing_message

REPO = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=600)


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    return next(line for line in stderr.splitlines() if "error:" in line)


def test_the_cli_names_a_dataset_missing_from_the_offline_cache() -> None:
    args = ["evaluate", str(tiny_bert_folder()), "--dataset_config_name", "cola", "--max_eval_samples", "8"]
    result = _run("-m", "hf_sgdr.cli", *args)
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line.startswith(
        "hf-sgdr evaluate: error: cannot load dataset 'nyu-mll/glue' (config 'cola') (Couldn't find cache for "
        "nyu-mll/glue for config 'cola'; Available configs in the cache: ['rte', 'sst2']); offline mode is on"
    )
    assert f"offline mode is on and it is not in the cache at HF_HOME={os.environ['HF_HOME']}" in line


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--task_name", "cola"], "glue.py: error: cannot load GLUE task 'cola' (dataset 'nyu-mll/glue') ("),
        (
            ["--task_name", "sst2", "--model_name_or_path", "someone/no-such-model"],
            "glue.py: error: cannot load model 'someone/no-such-model' (its tokenizer) (",
        ),
    ],
    ids=["dataset", "model"],
)
def test_the_glue_recipe_names_what_is_missing(tmp_path: Path, flags: list[str], expected: str) -> None:
    result = _run(str(REPO / "recipes" / "glue.py"), "--output_dir", str(tmp_path), "--max_train_steps", "2", *flags)
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert line.startswith(expected) and "build the offline cache (README, Quick start)" in line
    assert not (tmp_path / "snapshots").exists()


def test_the_hint_depends_on_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    error = OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    online = missing_message("model 'x/y'", error)
    assert online.startswith("cannot load model 'x/y' (We couldn't connect to 'https://huggingface.co' to load the")
    assert "set HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1" in online and "\n" not in online
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "offline mode is on" in missing_message("model 'x/y'", error)
    with (
        pytest.raises(ResourceNotFoundError, match="cannot load model 'x/y'") as caught,
        explain_missing("model 'x/y'"),
    ):
        raise error
    assert caught.value.__cause__ is error
    with pytest.raises(ValueError, match="not an OSError"), explain_missing("model 'x/y'"):
        raise ValueError("not an OSError")  # other failures pass through unchanged


def test_the_public_name_loading_is_explain_missing() -> None:
    assert hf_sgdr.loading is explain_missing
