"""`SnapshotEnsemble.from_pretrained` refuses at load, with an error that names the path and says what to do:
a mistyped local path, a corrupt file, a manifest without snapshots or of models the ensemble cannot
combine, a manifest.json linked from outside the folder, a plain Trainer output folder without snapshots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.ensembles import copy_folder, tiny_bert_folder
from helpers.hub import online, recording_endpoint
from transformers import Trainer

from hf_sgdr.missing_resources import ResourceNotFoundError
from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotLoadError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return copy_folder(tiny_bert_folder(), tmp_path / "out" / "snapshots")


def _edit_manifest(folder: Path, **changes: object) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    data.update(changes)
    (folder / "manifest.json").write_text(json.dumps(data))


def test_a_mistyped_local_path_is_not_looked_up_on_the_hub(folder: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^out/snapshotz does not exist \(did you mean out/snapshots\?\)"):
        SnapshotEnsemble.from_pretrained("out/snapshotz")
    for local in ["./snapshots", "../nowhere/snapshots", str(tmp_path / "missing"), "a/b/c"]:
        with pytest.raises(FileNotFoundError, match=f"^{local} does not exist"):
            SnapshotEnsemble.from_pretrained(local)
    with pytest.raises(FileNotFoundError, match="missing does not exist"):
        SnapshotEnsemble.from_pretrained(tmp_path / "missing")  # a Path is always local
    assert SnapshotEnsemble.from_pretrained("out/snapshots", progress=False).num_snapshots == 4
    # Nothing like it in out/: a Hub repo id, looked up there (offline here), and the error names it.
    with pytest.raises(FileNotFoundError, match=r"^cannot load the snapshot ensemble 'out/sst2-sgdr-ensemble' from"):
        SnapshotEnsemble.from_pretrained("out/sst2-sgdr-ensemble")
    # A bare name close to a folder here is that folder mistyped (`hf-sgdr evaluate out_sgrd`), not a legacy repo.
    (tmp_path / "out_sgdr").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^out_sgrd does not exist \(did you mean out_sgdr\?\)"):
        SnapshotEnsemble.from_pretrained("out_sgrd")
    with pytest.raises(FileNotFoundError, match=r"^cannot load the snapshot ensemble 'gpt2' from the Hub"):
        SnapshotEnsemble.from_pretrained("gpt2")  # nothing like it here: left to the Hub


def test_a_hub_repo_that_cannot_be_fetched_is_named(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ResourceNotFoundError, match=r"^cannot load the snapshot ensemble 'someone/sst2-sgdr' from the Hub"
    ) as err:
        SnapshotEnsemble.from_pretrained("someone/sst2-sgdr")
    assert "offline mode is on and it is not in the cache" in str(err.value) and "\n" not in str(err.value)


def test_a_checksum_mismatch_says_what_to_do(folder: Path) -> None:
    weights = folder / "cycle-001" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    weights.write_bytes(bytes(data))
    with pytest.raises(
        SnapshotLoadError, match=r"cycle-001/model.safetensors is corrupt.*Fetch the snapshot again"
    ) as err:
        SnapshotEnsemble.from_pretrained(folder)
    # the ways out are spelled for both audiences: the Python API and `hf-sgdr evaluate`
    assert "snapshots=[...]" in str(err.value) and "--snapshots NAME" in str(err.value)
    assert "force_download=True" in str(err.value) and "--force_download" in str(err.value)


def test_a_manifest_without_snapshots_is_refused_at_load(folder: Path) -> None:
    _edit_manifest(folder, snapshots=[])
    with pytest.raises(SnapshotLoadError, match=r"manifest\.json lists no snapshots"):
        SnapshotEnsemble.from_pretrained(folder)


def test_an_auto_class_the_ensemble_cannot_combine_is_refused_at_load(folder: Path) -> None:
    _edit_manifest(folder, auto_class="AutoModelForQuestionAnswering")
    with pytest.raises(ValueError, match=r"AutoModelForQuestionAnswering models .* the ensemble cannot combine"):
        SnapshotEnsemble.from_pretrained(folder)


def test_a_manifest_symlinked_from_outside_the_folder_is_refused(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    shutil.move(folder / "manifest.json", outside)
    (folder / "manifest.json").symlink_to(outside)
    with pytest.raises(SnapshotLoadError, match=r"manifest\.json resolves to .*elsewhere\.json, outside"):
        SnapshotEnsemble.from_pretrained(folder)


def test_a_plain_trainer_output_folder_says_how_to_get_snapshots(tmp_path: Path) -> None:
    from helpers.training import byte_lm_data, tiny_gpt2, training_args

    args = training_args(tmp_path, max_steps=4, lr_scheduler_type="sgdr", save_strategy="steps", save_steps=2)
    Trainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(16)).train()
    assert (tmp_path / "checkpoint-4").is_dir() and not (tmp_path / "snapshots").exists()
    with pytest.raises(
        FileNotFoundError,
        match=r"Trainer output folder without snapshots .*SGDRTrainer, or add SGDRCallback\(\)\.attach",
    ):
        SnapshotEnsemble.from_pretrained(tmp_path)
    # One of its checkpoints: how to ensemble the run's checkpoints, in Python and on the command line.
    with pytest.raises(
        FileNotFoundError, match=r"checkpoint-4 is one training checkpoint, not a snapshot folder, and"
    ) as err:
        SnapshotEnsemble.from_pretrained(tmp_path / "checkpoint-4")
    assert f"from_checkpoints({str(tmp_path)!r})" in str(err.value) and f"--checkpoints {tmp_path}" in str(err.value)
    # A checkpoint of a run that has snapshots (SGDRTrainer's): points at them.
    shutil.copytree(tiny_bert_folder(), tmp_path / "snapshots")
    with pytest.raises(FileNotFoundError, match=r"this run's snapshots are in .*snapshots \(give that folder"):
        SnapshotEnsemble.from_pretrained(tmp_path / "checkpoint-4")


def test_a_trainer_run_that_saved_no_checkpoints_says_how_to_get_snapshots(tmp_path: Path) -> None:
    """`save_strategy="no"`: the folder holds what `save_model()` wrote, or nothing; both say where snapshots come
    from."""
    from helpers.training import byte_lm_data, tiny_gpt2, training_args

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"written by SGDRTrainer or SGDRCallback, not by lr_scheduler_type="):
        SnapshotEnsemble.from_pretrained(empty)
    out = tmp_path / "run"
    args = training_args(out, max_steps=4, lr_scheduler_type="sgdr", save_strategy="no")
    trainer = Trainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(16))
    trainer.train()
    trainer.save_model()
    assert not any(out.glob("checkpoint-*")) and (out / "training_args.bin").is_file()
    with pytest.raises(FileNotFoundError, match=r"Trainer output folder without snapshots .*SGDRTrainer") as err:
        SnapshotEnsemble.from_pretrained(out)
    assert "from_checkpoints" not in str(err.value)  # it has none to ensemble


def test_a_missing_run_folder_is_named_at_once_without_a_network_call(tmp_path: Path, monkeypatch) -> None:
    """`out/snapshots` where `out/` does not exist (the README's wording before the run): a local path, not a
    Hub repo id; refused before any request, even with the offline mode off and a Hub endpoint reachable."""
    monkeypatch.chdir(tmp_path)
    with online(), recording_endpoint() as (url, recorder):
        monkeypatch.setenv("HF_ENDPOINT", url)
        for missing in ["out/snapshots", "out/cycle-002", "runs/checkpoint-500"]:
            parent = missing.split("/")[0]
            with pytest.raises(FileNotFoundError, match=rf"^{missing} does not exist \(there is no folder {parent}"):
                SnapshotEnsemble.from_pretrained(missing)
    assert recorder.requests == []
