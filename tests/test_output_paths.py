"""Output targets that are not regular files are refused, never replaced or written through: the crash-safe
writer renames a temporary over its target, which would turn a symlink, a FIFO or a device node into a regular
file (a `/dev/full` became a PNG). The command line checks its targets before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.ensembles import REPO_ROOT, tiny_bert_folder

from hf_sgdr.atomic import OutputPathError, atomic_write_bytes, atomic_write_json
from hf_sgdr.cli import main
from hf_sgdr.snapshots import SnapshotEnsemble

PLOT = ["plot", "--T_0", "10", "--num_training_steps", "30"]


def _special_targets(tmp_path: Path) -> dict[str, Path]:
    """A folder, a symlink to a regular file, a FIFO and a dangling symlink."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "kept.txt").write_text("kept")
    (tmp_path / "link").symlink_to(tmp_path / "kept.txt")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    return {name: tmp_path / name for name in ("folder", "link", "fifo", "dangling")}


def test_the_writer_refuses_targets_that_are_not_regular_files(tmp_path: Path) -> None:
    for kind, target in _special_targets(tmp_path).items():
        with pytest.raises(OutputPathError, match="refuses to replace"):
            atomic_write_bytes(target, b"new")
        assert not target.is_file() or target.is_symlink(), kind
    assert (tmp_path / "link").is_symlink() and (tmp_path / "kept.txt").read_text() == "kept"
    assert not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "fifo", "folder", "kept.txt", "link"]
    atomic_write_json(tmp_path / "kept.txt", {"a": 1})  # a regular file is replaced as before
    assert (tmp_path / "kept.txt").read_text().startswith("{")


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs a device node")
def test_a_device_node_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="/dev/null is a device"):
        atomic_write_bytes("/dev/null", b"x")


@pytest.mark.parametrize("kind", ["folder", "link", "fifo", "dangling"])
def test_plot_refuses_a_special_output_in_one_line(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _special_targets(tmp_path)[kind]
    with pytest.raises(SystemExit) as exited:
        main([*PLOT, "-o", str(target)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"hf-sgdr plot: error: --output {target} is a" in err
    assert (tmp_path / "kept.txt").read_text() == "kept" and (tmp_path / "link").is_symlink()


def test_evaluate_checks_output_json_before_any_work(tmp_path: Path) -> None:
    """Given a folder, --output_json fails at once (before the snapshots are even looked for), in one line."""
    command = ["evaluate", str(tmp_path / "no_such_run"), "--output_json", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "hf_sgdr.cli", *command],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"--output_json {tmp_path} is a folder" in result.stderr


def test_ensemble_evaluate_checks_json_path_before_any_work(tmp_path: Path) -> None:
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    never_read = map(lambda _: pytest.fail("the data was read before the json_path check"), range(1))
    with pytest.raises(OutputPathError, match=f"json_path {tmp_path} is a folder"):
        ensemble.evaluate(never_read, json_path=tmp_path)


def test_save_pretrained_checks_its_card_target_before_writing_anything(tmp_path: Path) -> None:
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    dest = tmp_path / "dest"
    dest.mkdir()
    os.mkfifo(dest / "README.md")
    with pytest.raises(OutputPathError, match=r"README\.md is a FIFO"):
        ensemble.save_pretrained(dest)
    assert sorted(os.listdir(dest)) == ["README.md"]
