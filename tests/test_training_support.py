"""Unit tests of the small training pieces: the running average's window, weight capture, model
description and the background writer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from helpers.training import (
    MODEL_ID,
    assert_checksums,
    minilm,
    read_manifest,
    snapshot_weights,
    temporaries,
    tiny_gpt2,
)

from hf_sgdr.snapshot_format import describe_model
from hf_sgdr.snapshot_format.layout import snapshot_name
from hf_sgdr.snapshot_format.manifest import SnapshotManifest, SnapshotRecord
from hf_sgdr.training import (
    CycleAverager,
    SnapshotWriteError,
    SnapshotWriter,
    capture_weights,
    save_weights,
)


@pytest.mark.parametrize(
    ("swa_start", "length", "first"),
    [(0.0, 10, 1), (0.3, 10, 3), (0.5, 10, 5), (0.5, 5, 3), (0.7, 10, 7), (0.99, 4, 4), (0.1, 1, 1)],
)
def test_averaging_window_is_exact_integer_arithmetic(swa_start: float, length: int, first: int) -> None:
    assert CycleAverager(swa_start).first_step(length) == first  # 0.3 * 10 is 3, not 3.0000000000000004 -> 4


def test_averager_is_a_running_mean_over_the_window_and_restarts_with_the_cycle() -> None:
    model = torch.nn.Linear(3, 2)
    averager = CycleAverager(0.5)
    seen = []
    for index in range(1, 7):  # a cycle of 6 steps: steps 3..6 are averaged
        with torch.no_grad():
            model.weight.fill_(float(index))
        added = averager.update(model, cycle=0, length=6, index=index)
        assert added == (index >= 3)
        if added:
            seen.append(float(index))
    assert averager.count == 4
    assert torch.allclose(averager.averages["weight"], torch.full((2, 3), sum(seen) / len(seen)))
    averager.update(model, cycle=0, length=9, index=5)  # the cycle got longer: the window moved, start again
    assert averager.count == 1 and torch.equal(averager.averages["weight"], model.weight.detach())
    state = averager.state_dict()
    restored = CycleAverager(0.5)
    restored.load_state_dict(state)
    assert (restored.cycle, restored.length, restored.count) == (0, 9, 1)
    with pytest.raises(ValueError, match="swa_start"):
        CycleAverager(0.25).load_state_dict(state)
    with pytest.raises(ValueError, match=r"swa_start must be a finite number in \[0, 1\)"):
        CycleAverager(1.0)


def test_captured_weights_are_cpu_copies_that_keep_tied_weights_tied() -> None:
    model = tiny_gpt2()
    weights = capture_weights(model)
    assert weights["lm_head.weight"] is weights["transformer.wte.weight"]
    assert weights["lm_head.weight"].data_ptr() != model.lm_head.weight.data_ptr()
    average = {"transformer.wte.weight": torch.zeros_like(model.transformer.wte.weight)}
    replaced = capture_weights(model, replace=average)
    assert replaced["lm_head.weight"] is replaced["transformer.wte.weight"]  # an average replaces both names
    assert float(replaced["lm_head.weight"].abs().max()) == 0.0
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)
    assert not torch.equal(weights["transformer.wte.weight"], model.transformer.wte.weight)


def test_saving_a_snapshot_prints_no_transformers_progress_bar(tmp_path: Path, capfd) -> None:
    from transformers.utils import logging as transformers_logging

    model = tiny_gpt2()
    model.save_pretrained(tmp_path / "plain")
    assert "Writing model shards" in capfd.readouterr().err  # what a snapshot would print without the guard
    save_weights(model, tmp_path / "snapshot", capture_weights(model))
    assert "Writing model shards" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # switched back on for everything else
    assert snapshot_weights(tmp_path / "snapshot").keys() == snapshot_weights(tmp_path / "plain").keys()


def test_a_capture_reuses_the_previous_copy_in_place() -> None:
    model = tiny_gpt2()
    first = capture_weights(model)
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)
    second = capture_weights(model, reuse=first)
    assert second["transformer.wte.weight"] is first["transformer.wte.weight"]  # same memory, new values
    assert second["lm_head.weight"] is second["transformer.wte.weight"]
    assert torch.equal(second["transformer.wte.weight"], model.transformer.wte.weight)
    assert all(torch.equal(second[name], tensor) for name, tensor in model.state_dict().items())


def test_describe_model_names_the_auto_class_base_and_task() -> None:
    gpt2 = describe_model(tiny_gpt2())
    assert (gpt2.snapshot_type, gpt2.auto_class, gpt2.base_model, gpt2.task) == (
        "full_model",
        "AutoModelForCausalLM",
        None,
        "text-generation",
    )
    bert = describe_model(minilm(), task="sentiment")
    assert (bert.auto_class, bert.base_model, bert.task) == (
        "AutoModelForSequenceClassification",
        MODEL_ID,
        "sentiment",
    )
    plain = describe_model(torch.nn.Linear(2, 2))
    assert (plain.snapshot_type, plain.auto_class) == ("full_model", None)


def _record(cycle: int) -> SnapshotRecord:
    return SnapshotRecord(
        name=snapshot_name(cycle), cycle=cycle, global_step=4 * (cycle + 1), scheduler_step=4 * (cycle + 1)
    )


def _save_bytes(payload: bytes):
    def save(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(payload)

    return save


def test_writer_rotates_after_the_manifest_and_sweeps_temporaries(tmp_path: Path) -> None:
    stale = tmp_path / ".tmp-cycle-009-123-deadbeef"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    writer = SnapshotWriter(tmp_path, SnapshotManifest(), max_snapshots=2)
    for cycle in range(4):
        writer.submit_snapshot(_record(cycle), _save_bytes(bytes([cycle]) * 10))
    writer.update_record("cycle-003", eval_metrics={"eval_accuracy": 0.75})
    assert writer.close() is None
    manifest = read_manifest(tmp_path)
    assert [r.name for r in manifest.snapshots] == ["cycle-002", "cycle-003"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cycle-002", "cycle-003", "manifest.json"]
    assert manifest.snapshots[1].eval_metrics == {"eval_accuracy": 0.75}
    digest = hashlib.sha256(bytes([3]) * 10).hexdigest()
    assert manifest.snapshots[1].files["model.safetensors"].sha256 == digest
    writer.update_record("cycle-002", train_loss=1.5)  # after close(): runs in this thread
    assert writer.wait() is None and read_manifest(tmp_path).snapshots[0].train_loss == 1.5


def test_writer_failure_leaves_nothing_half_written_and_is_reported(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path, SnapshotManifest())
    writer.submit_snapshot(_record(0), _save_bytes(b"ok"))

    def broken(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"half a tens")
        raise OSError("No space left on device")

    writer.submit_snapshot(_record(1), broken)
    writer.submit_snapshot(_record(2), _save_bytes(b"fine"))
    error = writer.wait()
    assert isinstance(error, SnapshotWriteError) and isinstance(error.__cause__, OSError)
    assert str(error).startswith(f"writing snapshot {tmp_path / 'cycle-001'} failed: OSError: No space left")
    assert writer.wait() is None  # reported once
    manifest = read_manifest(tmp_path)
    assert [r.name for r in manifest.snapshots] == ["cycle-000", "cycle-002"]
    assert not (tmp_path / "cycle-001").exists() and temporaries(tmp_path) == []
    for record in manifest.snapshots:
        assert_checksums(tmp_path, record)
    writer.close()
