"""Pushing an ensemble with huggingface_hub's real HTTP client to a local endpoint that records what arrives.

The endpoint (the only stand-in: there is no Hub here) answers just what a push uses: repo creation,
YAML validation, pre-upload and commit. The recorded commit is then written to disk and loaded back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import huggingface_hub
import pytest
import torch
from helpers.ensembles import REPO_ROOT, sst2_loader, tiny_bert_folder
from helpers.hub import TOKEN, Recorder, cache_layout, online
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

import hf_sgdr.snapshot_format.digests
from hf_sgdr.cli import main as cli_main
from hf_sgdr.snapshot_format.storage import record_files
from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotLoadError, SnapshotManifest
from hf_sgdr.snapshots.outputs import materialize


def _write_commit(files: dict[str, bytes], folder: Path) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def _no_token_anywhere(recorder: Recorder, *texts: str) -> None:
    for method, path, headers, body in recorder.requests:
        assert headers.get("authorization") == f"Bearer {TOKEN}", f"{method} {path} was not authenticated"
        assert TOKEN.encode() not in body and TOKEN not in path
    for commit in recorder.commits:
        assert all(TOKEN.encode() not in content for content in commit["files"].values())
    for text in texts:
        assert TOKEN not in text


def test_push_to_hub_round_trip(
    hub: tuple[str, Recorder], tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, recorder = hub
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    loader = sst2_loader("validation[:24]")
    report = ensemble.evaluate(
        loader, sst2_loader("train[300:332]"), eval_split="validation", selection_split="train", dataset="nyu-mll/glue"
    )
    caplog.set_level(logging.INFO)
    with online():
        info = ensemble.push_to_hub(
            "me/sgdr-ensemble", private=True, commit_message="Add SGDR snapshots", token=TOKEN, endpoint=endpoint
        )

    assert recorder.unexpected == []
    assert recorder.created == [{"name": "sgdr-ensemble", "organization": "me", "visibility": "private"}]
    assert len(recorder.commits) == 1  # the whole ensemble in one commit
    commit = recorder.commits[0]
    assert commit["repo"] == "me/sgdr-ensemble" and commit["revision"] == "main" and not commit["pr"]
    assert commit["header"]["summary"] == "Add SGDR snapshots"
    assert info.commit_url.startswith(f"{endpoint}/me/sgdr-ensemble/commit/")
    names = ensemble.snapshot_names
    expected = {"manifest.json", "README.md", "schedule.png", "tokenizer.json", "tokenizer_config.json"}
    expected |= {f"{n}/{f}" for n in names for f in ("config.json", "model.safetensors")}
    assert set(commit["files"]) == expected
    assert commit["files"]["schedule.png"].startswith(b"\x89PNG")
    _no_token_anywhere(recorder, caplog.text, *capsys.readouterr())

    local = _write_commit(commit["files"], tmp_path / "recorded")
    manifest = SnapshotManifest.load(local)
    assert [r.name for r in manifest.snapshots] == names and manifest.schedule == ensemble.schedule
    assert manifest.library_versions["hf_sgdr"] and manifest.library_versions["transformers"]
    assert [r.cycle for r in manifest.snapshots] == [0, 1, 2, 3]
    reloaded = SnapshotEnsemble.from_pretrained(local, progress=False)
    assert torch.equal(reloaded.predict(loader).member_outputs, ensemble.predict(loader).member_outputs)
    single = AutoModelForSequenceClassification.from_pretrained(local, subfolder="cycle-000").eval()
    with torch.inference_mode():
        logits = torch.cat([single(**inputs).logits for inputs in materialize(loader).inputs])
    assert torch.equal(logits, ensemble.predict(loader).member_outputs[0])

    card = ModelCard.load(local / "README.md")
    assert card.data.base_model is None and card.data.datasets == ["nyu-mll/glue"]
    assert card.data.library_name == "hf-sgdr" and "snapshot-ensemble" in card.data.tags
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["accuracy (uniform soup)"] == pytest.approx(report.row("uniform soup").metrics["accuracy"])
    assert results["accuracy (ensemble (last 4, average))"] == pytest.approx(
        report.row("ensemble (last 4, average)").metrics["accuracy"]
    )
    assert {r.dataset_config for r in card.data.eval_results} == {"sst2"}
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    text = card.text
    assert "![Learning rate against optimizer step" in text and "(schedule.png)" in text
    assert "| `T_0` |" in text and "| cycle | steps | length |" in text
    for row in report.rows:
        assert f"| {row.name} |" in text
    assert 'SnapshotEnsemble.from_pretrained("me/sgdr-ensemble")' in text
    assert 'from_pretrained("me/sgdr-ensemble", subfolder="cycle-003")' in text


def test_push_to_hub_keeps_the_training_provenance_and_uploads_in_place(
    hub: tuple[str, Recorder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pushed manifest is the training run's (library versions included), files go up from where they lie."""
    endpoint, recorder = hub
    folder = tmp_path / "trained"
    shutil.copytree(tiny_bert_folder(), folder)
    trained_with = {"hf_sgdr": "0.0.1", "torch": "2.0.0", "transformers": "4.40.0", "huggingface_hub": "0.20.0"}
    replace(SnapshotManifest.load(folder), library_versions=trained_with).save(folder)
    ensemble = SnapshotEnsemble.from_pretrained(folder, snapshots=2, progress=False)

    def no_copy(*args: object, **kwargs: object) -> None:
        raise AssertionError("push_to_hub saved a copy of a folder-backed ensemble")

    hashed: list[object] = []
    monkeypatch.setattr(SnapshotEnsemble, "save_pretrained", no_copy)
    monkeypatch.setattr(hf_sgdr.snapshot_format.digests, "sha256_range", lambda *piece: hashed.append(piece))
    with online():
        ensemble.push_to_hub("me/provenance", token=TOKEN, endpoint=endpoint)

    files = recorder.commits[0]["files"]
    pushed = json.loads(files["manifest.json"])
    assert pushed["library_versions"] == trained_with  # not the pushing machine's
    assert [s["name"] for s in pushed["snapshots"]] == ["cycle-002", "cycle-003"]
    snapshot_files = {name for name in files if "/" in name}
    kept = ("cycle-002", "cycle-003")
    assert snapshot_files == {f"{n}/{f}" for n in kept for f in ("config.json", "model.safetensors")}
    for name in snapshot_files | {"tokenizer.json", "tokenizer_config.json"}:
        assert files[name] == (folder / name).read_bytes()
    assert hashed == []  # huggingface_hub's digest, checked against the manifest, is the only hashing
    assert ModelCard(files["README.md"].decode()).data.library_name == "hf-sgdr"


def test_push_refuses_a_snapshot_altered_after_loading(hub: tuple[str, Recorder], tmp_path: Path) -> None:
    endpoint, recorder = hub
    folder = tmp_path / "trained"
    shutil.copytree(tiny_bert_folder(), folder)
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    weights = folder / "cycle-003" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, same header: only the digest tells
    weights.write_bytes(bytes(data))
    with online(), pytest.raises(SnapshotLoadError, match=r"cycle-003/model.safetensors is corrupt"):
        ensemble.push_to_hub("me/altered", token=TOKEN, endpoint=endpoint)
    assert recorder.commits == [] and recorder.created == []


def test_card_snippet_runs_against_the_pushed_files(hub: tuple[str, Recorder], tmp_path: Path) -> None:
    endpoint, recorder = hub
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    with online():
        ensemble.push_to_hub("me/snippet", token=TOKEN, endpoint=endpoint, create_pr=True, commit_message="PR")
    commit = recorder.commits[0]
    assert commit["pr"] and commit["header"]["summary"] == "PR"
    local = _write_commit(commit["files"], tmp_path / "recorded")
    card = ModelCard.load(local / "README.md")
    assert card.data.eval_results is None  # no evaluation attached: no model-index
    assert "No ensemble evaluation was attached" in card.text
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S)[1]
    assert "text_dataloader" in snippet
    namespace: dict = {}
    exec(snippet.replace("me/snippet", str(local)), namespace)  # the card's copy-paste snippet, verbatim
    prediction = namespace["prediction"]
    assert prediction.scores.shape == (1, 2) and prediction.predictions.shape == (1,)


def test_from_pretrained_a_repo_id_through_the_offline_cache(hub: tuple[str, Recorder], tmp_path: Path) -> None:
    endpoint, recorder = hub
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    with online():
        ensemble.push_to_hub("me/cached", token=TOKEN, endpoint=endpoint)
    files, pushed = dict(recorder.commits[0]["files"]), len(recorder.requests)
    cache_layout(files, tmp_path / "cache", "me/cached")
    loader = sst2_loader("validation[:16]")
    loaded = SnapshotEnsemble.from_pretrained("me/cached", cache_dir=tmp_path / "cache", progress=False)
    assert loaded.snapshot_names == ensemble.snapshot_names and loaded.tokenizer is not None
    assert torch.equal(loaded.predict(loader).member_outputs, ensemble.predict(loader).member_outputs)
    assert len(recorder.requests) == pushed  # loading went to the cache only

    files["cycle-001/pytorch_model.bin"] = b"not even loaded"
    record = json.loads(files["manifest.json"])
    record["snapshots"][1]["files"]["pytorch_model.bin"] = {"sha256": "0" * 64, "size": 15}
    files["manifest.json"] = json.dumps(record).encode()
    cache_layout(files, tmp_path / "cache2", "me/cached")
    with pytest.raises(ValueError, match=r"refusing me/cached/cycle-001/pytorch_model.bin: it is a pickle-based"):
        SnapshotEnsemble.from_pretrained("me/cached", cache_dir=tmp_path / "cache2")


def test_cli_push_takes_the_token_from_the_environment(hub: tuple[str, Recorder], tmp_path: Path) -> None:
    endpoint, recorder = hub
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": TOKEN,
        "HF_HUB_OFFLINE": "0",
        "PYTHONPATH": str(REPO_ROOT),
    }
    report = tmp_path / "report.json"
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    ensemble.evaluate(sst2_loader("validation[:16]"), soups=False, eval_split="validation", json_path=report)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_sgdr.cli",
            "push",
            str(tiny_bert_folder()),
            "--repo-id",
            "me/from-cli",
            "--create-pr",
            "--commit-message",
            "from the CLI",
            "--results",
            str(report),
            "--dataset_name",
            "nyu-mll/glue",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "pushed 4 snapshots to me/from-cli: " in result.stdout and "/discussions/1" in result.stdout
    _no_token_anywhere(recorder, result.stdout, result.stderr)
    commit = recorder.commits[0]
    assert commit["pr"] and commit["header"]["summary"] == "from the CLI"
    assert {"README.md", "schedule.png", "manifest.json", "cycle-003/model.safetensors"} <= set(commit["files"])
    assert commit["files"]["manifest.json"] == (tiny_bert_folder() / "manifest.json").read_bytes()  # as trained
    card = ModelCard(commit["files"]["README.md"].decode())
    assert {r.metric_name for r in card.data.eval_results} >= {"accuracy (ensemble (last 4, average))"}

    bad = subprocess.run(
        [sys.executable, "-m", "hf_sgdr.cli", "push", str(tmp_path), "--repo-id", "me/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "no manifest.json in" in bad.stderr


def test_a_push_names_local_paths_by_their_last_part_only(
    hub: tuple[str, Recorder],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run on local data records absolute paths (so that a command finds them from any folder); the pushed
    manifest and card name them by their last part, the folder keeps them, and the pushed folder still loads.
    `hf-sgdr push` says which keys it changed."""
    endpoint, recorder = hub
    folder = tmp_path / "alice-private" / "trained"
    shutil.copytree(tiny_bert_folder(), folder)
    manifest = SnapshotManifest.load(folder)
    corpus, data_file = str(tmp_path / "alice-private" / "corpus"), str(tmp_path / "alice-private" / "train.csv")
    training = {
        **manifest.training,
        "dataset_name": corpus,
        "validation_text": f"the last 10 % of the rows of {corpus}'s train split",
        "train_data": {"split": "train", "rows_used": 8, "held_out": [1, 5], "data_file": data_file},
    }
    local = replace(manifest, base_model=str(tmp_path / "alice-private" / "bert-ft"), training=training)
    local.save(folder)
    on_disk = (folder / "manifest.json").read_bytes()
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    report = ensemble.evaluate(  # reported on local files, as `--validation_file` and `--selection_file` name them
        sst2_loader("validation[:16]"),
        sst2_loader("train[300:316]"),
        eval_split=str(tmp_path / "alice-private" / "valid.csv"),
        selection_split=str(tmp_path / "alice-private" / "choose.csv"),
    )
    caplog.set_level(logging.INFO, logger="hf_sgdr")
    with online():
        ensemble.push_to_hub("me/local", token=TOKEN, endpoint=endpoint, report=report)

    files = recorder.commits[0]["files"]
    for name, content in files.items():
        if not name.endswith((".safetensors", ".png")):
            assert b"alice-private" not in content and str(tmp_path).encode() not in content, name
    pushed = SnapshotManifest.from_dict(json.loads(files["manifest.json"]))
    assert pushed.base_model == "./bert-ft" and pushed.training["dataset_name"] == "./corpus"
    assert pushed.training["validation_text"] == "the last 10 % of the rows of corpus's train split"
    assert pushed.training["train_data"] == {**training["train_data"], "data_file": "./train.csv"}
    assert pushed.snapshots == local.snapshots
    assert "training.dataset_name" in caplog.text and "base_model" in caplog.text
    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model is None and card.data.datasets is None
    assert "a local dataset, `corpus`" in card.text
    summary = "Metrics on the `./valid.csv` split of `corpus`; the greedy and fitted rows were chosen on `./choose.csv`"
    assert summary in card.text
    assert (folder / "manifest.json").read_bytes() == on_disk  # the training folder keeps its own record
    recorded = _write_commit(files, tmp_path / "recorded")
    names = [record.name for record in local.snapshots]
    assert SnapshotEnsemble.from_pretrained(recorded, progress=False).snapshot_names == names

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    capsys.readouterr()
    with online():
        assert cli_main(["push", str(folder), "--repo-id", "me/local-cli"]) == 0
    err = capsys.readouterr().err
    assert "note: the pushed manifest names local paths by their last part: base_model, training.dataset_name" in err
    from_cli = SnapshotManifest.from_dict(json.loads(recorder.commits[1]["files"]["manifest.json"]))
    assert (from_cli.base_model, from_cli.training) == (pushed.base_model, pushed.training)


def test_push_checks_files_recorded_in_pieces_before_sending(
    hub: tuple[str, Recorder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest of format 2 (files larger than a piece) is pushed as it is, and a file that no longer matches
    its piece digests is refused before anything is sent."""
    endpoint, recorder = hub
    folder = tmp_path / "pieced"
    shutil.copytree(tiny_bert_folder(), folder)
    monkeypatch.setattr(hf_sgdr.snapshot_format.digests, "PIECE_SIZE", 1 << 16)
    manifest = SnapshotManifest.load(folder)
    for record in manifest.snapshots:
        record.files = record_files(folder / record.name)
    manifest.save(folder)
    assert json.loads((folder / "manifest.json").read_text())["format_version"] == 2
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    with online():
        ensemble.push_to_hub("me/pieced", token=TOKEN, endpoint=endpoint)
    files = recorder.commits[0]["files"]
    pushed = json.loads(files["manifest.json"])
    assert pushed["format_version"] == 2
    assert SnapshotManifest.from_dict(pushed).snapshots == manifest.snapshots
    assert files["cycle-001/model.safetensors"] == (folder / "cycle-001" / "model.safetensors").read_bytes()

    weights = folder / "cycle-001" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, same header: only the digest of the last piece tells
    weights.write_bytes(bytes(data))
    with online(), pytest.raises(SnapshotLoadError, match=r"cycle-001/model.safetensors is corrupt"):
        ensemble.push_to_hub("me/pieced-altered", token=TOKEN, endpoint=endpoint)
    assert len(recorder.commits) == 1 and len(recorder.created) == 1  # nothing sent for the altered folder


def test_a_card_names_a_local_dataset_by_its_folder_only(tmp_path: Path) -> None:
    """A run on a local dataset folder records its path: the card shows the folder's name, not the uploader's
    folders, and lists no Hub dataset (nor model-index results against one)."""
    from hf_sgdr.snapshots.card import build_card

    manifest = SnapshotManifest.load(tiny_bert_folder())
    local = replace(manifest, training={**manifest.training, "dataset_name": "/home/alice/private/corpus"})
    card = build_card(local)
    assert "/home/alice" not in str(card) and "a local dataset, `corpus`" in card.text
    assert card.data.datasets is None and card.data.eval_results is None
    windows = replace(manifest, training={**manifest.training, "dataset_name": "C:\\Users\\alice\\corpus"})
    assert "alice" not in str(build_card(windows)) and "a local dataset, `corpus`" in build_card(windows).text
    hub = replace(manifest, training={**manifest.training, "dataset_name": "Salesforce/wikitext"})
    assert build_card(hub).data.datasets == ["Salesforce/wikitext"]


def test_relative_local_names_shaped_like_hub_ids_are_local_where_they_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`data/train.csv` and `models/bert`, as typed, look like Hub ids: where they exist they are the uploader's
    files, named by their last part in the pushed manifest and card (no Hub link); where they do not, Hub ids."""
    from hf_sgdr.snapshots.card import build_card
    from hf_sgdr.snapshots.hub import public_manifest

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("sentence,label\n")
    (tmp_path / "models" / "bert").mkdir(parents=True)
    manifest = SnapshotManifest.load(tiny_bert_folder())
    training = {**manifest.training, "dataset_name": "data/train.csv", "dataset_config_name": None}
    local = replace(manifest, base_model="models/bert", training=training)
    published, hidden = public_manifest(local)
    assert (published.base_model, published.training["dataset_name"]) == ("./bert", "./train.csv")
    assert hidden == ["base_model", "training.dataset_name"]
    card = build_card(local)
    assert card.data.base_model is None and card.data.datasets is None and "a local dataset, `train.csv`" in card.text
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert public_manifest(local)[1] == []  # nothing by those names here: Hub ids
    assert build_card(local).data.base_model == "models/bert"
