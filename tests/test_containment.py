"""Every file hf_sgdr reads or uploads resolves inside its folder, and nothing is written outside a destination:
root files reached through a symlink out of a snapshot folder are refused at push and at load (a received
folder with `notes.txt -> ~/.cache/huggingface/token` must not publish the token), and a checkpoint's shard
index may name only plain files of the checkpoint (a name climbing out through a symlinked subfolder would make
`save_pretrained` write outside its destination)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.ensembles import copy_folder, tiny_bert, tiny_bert_folder, tokenizer
from helpers.hub import TOKEN, Recorder, online

from hf_sgdr.cli import main
from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotLoadError


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A stand-in for `~/.cache/huggingface/token`, outside every folder the tests push or load."""
    path = tmp_path / "home" / "token"
    path.parent.mkdir()
    path.write_text(TOKEN)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return copy_folder(tiny_bert_folder(), tmp_path / "received")


@pytest.mark.parametrize("name", ["notes.txt", "vocab.txt", "README.md"])
def test_push_and_load_refuse_a_root_file_linked_out_of_the_folder(
    folder: Path, secret: Path, hub: tuple[str, Recorder], name: str
) -> None:
    endpoint, recorder = hub
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    (folder / name).unlink(missing_ok=True)
    (folder / name).symlink_to(secret)
    with online(), pytest.raises(SnapshotLoadError, match=rf"{name} resolves to .*outside"):
        ensemble.push_to_hub("me/x", token=TOKEN, endpoint=endpoint)
    assert recorder.commits == []
    assert all(TOKEN.encode() not in body for *_, body in recorder.requests)
    with pytest.raises(SnapshotLoadError, match=rf"{name} resolves to .*outside"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)


def test_cli_push_refuses_a_root_file_linked_out_with_one_line(
    folder: Path, secret: Path, hub: tuple[str, Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, recorder = hub
    (folder / "notes.txt").symlink_to(secret)
    with pytest.raises(SystemExit) as exited, online(), pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_ENDPOINT", endpoint)
        main(["push", str(folder), "--repo-id", "me/x"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "notes.txt resolves to" in err and len(err.strip().splitlines()) == 1
    assert recorder.commits == [] and TOKEN not in err


def test_a_symlink_inside_the_folder_is_still_pushed(folder: Path, hub: tuple[str, Recorder]) -> None:
    endpoint, recorder = hub
    (folder / "extra").mkdir()
    (folder / "extra" / "notes.md").write_text("kept inside")
    (folder / "notes.md").symlink_to(folder / "extra" / "notes.md")
    with online():
        SnapshotEnsemble.from_pretrained(folder, progress=False).push_to_hub("me/x", token=TOKEN, endpoint=endpoint)
    assert recorder.commits[0]["files"]["notes.md"] == b"kept inside"


def test_tokenizer_files_linked_out_of_a_checkpoint_are_refused(tmp_path: Path, secret: Path) -> None:
    checkpoint = tmp_path / "run" / "checkpoint-5"
    tiny_bert().save_pretrained(checkpoint)
    tokenizer().save_pretrained(checkpoint)
    outside = tmp_path / "elsewhere.json"
    outside.write_text((checkpoint / "tokenizer_config.json").read_text())
    (checkpoint / "tokenizer_config.json").unlink()
    (checkpoint / "tokenizer_config.json").symlink_to(outside)
    with pytest.raises(SnapshotLoadError, match=r"tokenizer_config\.json resolves to .*outside"):
        SnapshotEnsemble.from_checkpoints(tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    "shard", ["sub/../../../x.safetensors", "sub/x.safetensors", "/tmp/x.safetensors", "../x.safetensors"]
)
def test_a_shard_index_naming_anything_but_a_plain_file_is_refused(tmp_path: Path, shard: str) -> None:
    run = tmp_path / "run"
    checkpoint = run / "checkpoint-5"
    tiny_bert().save_pretrained(checkpoint)
    (checkpoint / "d1" / "d2" / "d3").mkdir(parents=True)
    (checkpoint / "sub").symlink_to(checkpoint / "d1" / "d2" / "d3")  # sub/../../.. is the checkpoint again
    (checkpoint / "model.safetensors").rename(checkpoint / "x.safetensors")
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {"w": shard}}))
    with pytest.raises(SnapshotLoadError, match="plain file name"):
        SnapshotEnsemble.from_checkpoints(run, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["run"]  # nothing written beside it


def test_save_pretrained_never_writes_through_a_link_out_of_the_destination(tmp_path: Path, secret: Path) -> None:
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "tokenizer.json").symlink_to(secret)  # a tokenizer saved in place would be written through it
    with pytest.raises(ValueError, match=r"holds no snapshot ensemble"):
        ensemble.save_pretrained(dest)  # a folder that is no ensemble is never replaced
    assert secret.read_text() == TOKEN and sorted(os.listdir(dest)) == ["tokenizer.json"]
    # An ensemble folder with such a link is replaced whole: the new ensemble is written in a fresh folder, so
    # nothing is written through the link, and the link's target is untouched.
    ensemble.save_pretrained(tmp_path / "ensemble")
    (tmp_path / "ensemble" / "tokenizer.json").unlink()
    (tmp_path / "ensemble" / "tokenizer.json").symlink_to(secret)
    ensemble.save_pretrained(tmp_path / "ensemble")
    assert secret.read_text() == TOKEN
    assert not (tmp_path / "ensemble" / "tokenizer.json").is_symlink()
