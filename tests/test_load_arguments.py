"""Careless arguments and values at load: `snapshots=` / `checkpoints=` given one name or a non-sequence, and a
`trainer_state.json` holding numbers the manifest cannot hold (1e400, NaN, 10**400). Each is settled at load:
refused naming the parameter, or read as the user meant, never iterated character by character or failing
half way through a later `save_pretrained`."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import damage
from helpers.ensembles import copy_folder, tiny_bert, tiny_bert_folder, tokenizer

from hf_sgdr.snapshot_format.loading import verify_folder
from hf_sgdr.snapshots import SnapshotEnsemble


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return copy_folder(tiny_bert_folder(), tmp_path / "snapshots")


def write_checkpoints(run: Path, steps: tuple[int, ...]) -> Path:
    """A Trainer-style output_dir of a real tiny BERT, with its tokenizer."""
    tokenizer().save_pretrained(run)
    return damage.write_checkpoints(run, tiny_bert(), steps)


@pytest.mark.parametrize("parameter", ["snapshots", "checkpoints"])
def test_one_name_as_a_string_is_that_one_member(folder: Path, tmp_path: Path, parameter: str) -> None:
    if parameter == "snapshots":
        ensemble = SnapshotEnsemble.from_pretrained(folder, snapshots="cycle-001", progress=False)
        assert ensemble.snapshot_names == ["cycle-001"]
    else:
        run = write_checkpoints(tmp_path / "run", (5, 10))
        ensemble = SnapshotEnsemble.from_checkpoints(run, checkpoints="checkpoint-10", progress=False)
        assert ensemble.snapshot_names == ["checkpoint-10"]


@pytest.mark.parametrize("parameter", ["snapshots", "checkpoints"])
@pytest.mark.parametrize("value", [True, False, {"cycle-001"}, {"cycle-001": 1}, 2.0, b"cycle-001", ["cycle-001", 3]])
def test_a_value_that_is_not_names_or_a_count_is_refused_naming_the_parameter(
    folder: Path, tmp_path: Path, parameter: str, value: object
) -> None:
    with pytest.raises(TypeError, match=rf"^{parameter} must be a name, a list of names or an int n"):
        if parameter == "snapshots":
            SnapshotEnsemble.from_pretrained(folder, snapshots=value, progress=False)
        else:
            SnapshotEnsemble.from_checkpoints(write_checkpoints(tmp_path / "run", (5,)), checkpoints=value)


def test_an_empty_or_repeated_selection_is_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match=r"snapshots=\[\] selects nothing"):
        SnapshotEnsemble.from_pretrained(folder, snapshots=[])
    with pytest.raises(ValueError, match=r"snapshots names \['cycle-001'\] more than once"):
        SnapshotEnsemble.from_pretrained(folder, snapshots=["cycle-001", "cycle-002", "cycle-001"])


@pytest.mark.parametrize(
    "text",
    [
        '{"epoch": NaN, "log_history": [{"step": 5, "loss": 1e400, "learning_rate": 1e-3}]}',
        '{"epoch": 1e400, "log_history": [{"step": 5, "loss": -Infinity, "learning_rate": NaN}]}',
        '{"epoch": 1, "log_history": [{"step": 5, "loss": 1' + "0" * 400 + ', "learning_rate": 1e-3}]}',
        '{"epoch": -3, "log_history": [{"step": 5, "loss": 0.5, "learning_rate": -1' + "0" * 400 + "}]}",
        '{"epoch": 1, "log_history": [{"step": 5, "loss": 1' + "0" * 5000 + "}]}",  # past Python's int digit limit
        '{"epoch": 1, "log_history": [{"step": 5, "loss": ' + "[" * 100_000 + "]" * 100_000 + "}]}",
    ],
)
def test_trainer_state_numbers_the_manifest_cannot_hold_are_left_out_at_load(tmp_path: Path, text: str) -> None:
    run = write_checkpoints(tmp_path / "run", (5,))
    (run / "checkpoint-5" / "trainer_state.json").write_text(text)
    ensemble = SnapshotEnsemble.from_checkpoints(run, progress=False)
    (record,) = ensemble.records
    assert record.epoch in (None, 1.0) and record.train_loss in (None, 0.5) and record.lr in ([], [1e-3])
    saved = ensemble.save_pretrained(tmp_path / "saved")  # whole, and loadable
    verify_folder(saved)
    assert SnapshotEnsemble.from_pretrained(saved, progress=False).snapshot_names == ["checkpoint-5"]
