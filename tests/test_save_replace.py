"""`SnapshotEnsemble.save_pretrained` over a folder that already holds an ensemble, the folder it was loaded from
included: a real process SIGKILLed at each stage of the save leaves the old ensemble or the new one, whole and
loadable, never a mix; a failure does the same; what the old folder held besides its ensemble is kept; a
non-empty folder that is no ensemble is refused, not replaced."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.ensembles import copy_folder, tiny_bert_folder, tiny_lm_folder

from hf_sgdr.atomic import TMP_PREFIX
from hf_sgdr.snapshot_format.loading import verify_folder
from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotLoadError

TESTS = Path(__file__).resolve().parent
SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_save_replace import save
save(sys.argv[1], sys.argv[2], sys.argv[3])
"""
BERT = ["cycle-000", "cycle-001", "cycle-002", "cycle-003"]
LM = ["cycle-000", "cycle-001", "cycle-002"]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install_kill(kill: str) -> None:
    """Make this process kill itself at stage `kill` of the save."""
    import hf_sgdr.folder_swap as folder_swap
    import hf_sgdr.snapshots.publishing as publishing
    from hf_sgdr.snapshot_format.manifest import SnapshotManifest

    if kill == "first-member":
        real_write = publishing.write_snapshot_folder

        def write_snapshot_folder(folder: Any, save: Any) -> Any:
            files = real_write(folder, save)
            _die()  # one member written, the others not yet
            return files

        publishing.write_snapshot_folder = write_snapshot_folder
    elif kill == "manifest":
        real_save = SnapshotManifest.save

        def save(self: Any, folder: Any) -> Any:
            real_save(self, folder)
            _die()  # the new ensemble is complete in its temporary folder, not yet in place

        SnapshotManifest.save = save
    elif kill in ("before-swap", "after-swap"):
        real_exchange = folder_swap.exchange

        def exchange(first: Path, second: Path) -> bool:
            if kill == "before-swap":
                _die()
            done = real_exchange(first, second)
            _die()  # the new ensemble in place, the old one not yet deleted
            return done

        folder_swap.exchange = exchange
    elif kill == "delete-old":
        real_rmtree = folder_swap.shutil.rmtree

        def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
            if Path(path).name.startswith(TMP_PREFIX):
                (Path(path) / "manifest.json").unlink()  # part of the old folder deleted
                _die()
            real_rmtree(path, *args, **kwargs)

        folder_swap.shutil.rmtree = rmtree
    elif kill != "none":
        raise ValueError(kill)


def save(source: str, destination: str, kill: str) -> None:
    """Load the ensemble in `source` (its last two snapshots when it is also the destination) and save it."""
    _install_kill(kill)
    snapshots = 2 if source == destination else None
    SnapshotEnsemble.from_pretrained(source, snapshots=snapshots, progress=False).save_pretrained(destination)


def _child(script: Path, source: Path, destination: Path, kill: str) -> int:
    result = subprocess.run(
        [sys.executable, str(script), str(source), str(destination), kill],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=600,
    )
    if result.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(result.stderr.decode()[-3000:])
    return result.returncode


def _names(folder: Path) -> list[str]:
    """The snapshots of a whole, loadable ensemble folder (every check of a load passes)."""
    verify_folder(folder)
    return SnapshotEnsemble.from_pretrained(folder, progress=False).snapshot_names


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "save.py"
    path.write_text(SCRIPT.format(tests=str(TESTS)))
    return path


@pytest.mark.parametrize(
    ("kill", "left"),
    [
        ("before-swap", "old"),
        ("after-swap", "new"),
        # More kill points, same guarantee: in the slow run (the default run keeps CI inside its time).
        *(
            pytest.param(k, w, marks=pytest.mark.slow)
            for k, w in [("first-member", "old"), ("manifest", "old"), ("none", "new")]
        ),
    ],
)
def test_a_kill_while_saving_over_another_ensemble_leaves_one_of_them_whole(
    tmp_path: Path, script: Path, kill: str, left: str
) -> None:
    destination = copy_folder(tiny_bert_folder(), tmp_path / "ensemble")  # 4 BERT snapshots
    (destination / "notes.txt").write_text("mine")
    expected = _child(script, tiny_lm_folder(), destination, kill)  # 3 GPT-2 snapshots over them
    assert expected == (0 if kill == "none" else -signal.SIGKILL)
    assert _names(destination) == (BERT if left == "old" else LM)
    assert (destination / "notes.txt").read_text() == "mine"

    # The next save sweeps what the killed one left beside the folder, and completes.
    assert _child(script, tiny_lm_folder(), destination, "none") == 0
    assert _names(destination) == LM and (destination / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)] == []


@pytest.mark.parametrize(
    ("kill", "left"),
    [
        ("after-swap", "new"),
        *(pytest.param(k, w, marks=pytest.mark.slow) for k, w in [("first-member", "old"), ("delete-old", "new")]),
    ],
)
def test_a_kill_while_saving_over_the_folder_it_was_loaded_from_leaves_one_whole(
    tmp_path: Path, script: Path, kill: str, left: str
) -> None:
    folder = copy_folder(tiny_bert_folder(), tmp_path / "ensemble")
    assert _child(script, folder, folder, kill) == -signal.SIGKILL
    assert _names(folder) == (BERT if left == "old" else BERT[2:])


def test_saving_over_the_folder_it_was_loaded_from_keeps_it_usable(tmp_path: Path) -> None:
    folder = copy_folder(tiny_lm_folder(), tmp_path / "ensemble")
    ensemble = SnapshotEnsemble.from_pretrained(folder, snapshots=["cycle-001", "cycle-002"], progress=False)
    ensemble.save_pretrained(folder)
    assert _names(folder) == ["cycle-001", "cycle-002"] and not (folder / "cycle-000").exists()
    ensemble.save_pretrained(folder)  # its members are read from the new folder, which holds them
    assert _names(folder) == ["cycle-001", "cycle-002"]


def test_a_failure_half_way_leaves_the_old_ensemble(tmp_path: Path) -> None:
    destination = copy_folder(tiny_bert_folder(), tmp_path / "ensemble")
    ensemble = SnapshotEnsemble.from_pretrained(tiny_lm_folder(), progress=False)
    ensemble.training = {"not JSON": float("nan")}  # the manifest, written last, refuses it
    with pytest.raises(ValueError):
        ensemble.save_pretrained(destination)
    assert _names(destination) == BERT
    assert [p.name for p in tmp_path.iterdir()] == ["ensemble"]  # no temporary left


def test_the_working_directory_is_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_folder(tiny_lm_folder(), tmp_path / "ensemble")
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    monkeypatch.chdir(folder / "cycle-000")
    with pytest.raises(ValueError, match=r"save_directory \.\. holds this process's working directory"):
        ensemble.save_pretrained("..")
    assert _names(folder) == LM


def test_a_folder_that_is_no_ensemble_is_not_replaced(tmp_path: Path) -> None:
    ensemble = SnapshotEnsemble.from_pretrained(tiny_lm_folder(), progress=False)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "thesis.tex").write_text("years of it")
    with pytest.raises(ValueError, match=r"work is not empty and holds no snapshot ensemble \(no manifest.json\)"):
        ensemble.save_pretrained(tmp_path / "work")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"save_directory .*file exists and is not a folder"):
        ensemble.save_pretrained(tmp_path / "file")
    assert (tmp_path / "work" / "thesis.tex").read_text() == "years of it"
    (tmp_path / "empty").mkdir()
    assert _names(ensemble.save_pretrained(tmp_path / "empty")) == LM


def test_what_the_old_folder_holds_besides_its_ensemble_is_kept_never_followed(tmp_path: Path) -> None:
    destination = copy_folder(tiny_bert_folder(), tmp_path / "ensemble")
    (destination / ".git" / "objects").mkdir(parents=True)
    (destination / ".git" / "objects" / "pack").write_text("history")
    (destination / "outside").symlink_to(tmp_path / "secret")
    os.mkfifo(destination / "pipe")  # reading it would block: it must be carried, not read
    SnapshotEnsemble.from_pretrained(tiny_lm_folder(), progress=False).save_pretrained(destination)
    manifest, _ = verify_folder(destination)
    assert [r.name for r in manifest.snapshots] == LM and not (destination / "cycle-003").exists()
    # Kept as it was, the link out still makes a load refuse the folder (as it refused the old one).
    with pytest.raises(SnapshotLoadError, match=r"outside resolves to .*: refusing a path that escapes"):
        SnapshotEnsemble.from_pretrained(destination, progress=False)
    assert (destination / ".git" / "objects" / "pack").read_text() == "history"
    assert os.readlink(destination / "outside") == str(tmp_path / "secret")
    assert stat.S_ISFIFO(os.lstat(destination / "pipe").st_mode)
