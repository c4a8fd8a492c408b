"""Snapshots of a `torch.compile`d model (the Trainer's `torch_compile=True`, or a compiled model in a
plain Accelerate loop) are those of the uncompiled model: same files, same names, same tensors, and they load."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers.training import (
    byte_lm_data,
    read_manifest,
    snapshot_weights,
    tiny_accelerate_run,
    tiny_gpt2,
    training_args,
)

from hf_sgdr.snapshots import SnapshotEnsemble
from hf_sgdr.training import SGDRTrainer


def _files(snapshot_dir: Path) -> dict[str, list[str]]:
    return {
        record.name: sorted(p.name for p in (snapshot_dir / record.name).iterdir())
        for record in read_manifest(snapshot_dir).snapshots
    }


def _assert_same_snapshots(compiled: Path, plain: Path) -> None:
    manifest = read_manifest(compiled)
    assert manifest.auto_class == read_manifest(plain).auto_class == "AutoModelForCausalLM"
    assert _files(compiled) == _files(plain)
    assert "config.json" in _files(compiled)["cycle-000"]
    for record in manifest.snapshots:
        ours, theirs = snapshot_weights(compiled / record.name), snapshot_weights(plain / record.name)
        assert sorted(ours) == sorted(theirs)
        assert not any("_orig_mod" in name for name in ours)
        for name in theirs:
            torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=0)
    ensemble = SnapshotEnsemble.from_pretrained(compiled)
    assert ensemble.snapshot_names == [r.name for r in manifest.snapshots]


def _trainer_run(folder: Path, compile_model: bool) -> Path:
    extra = {"torch_compile": True, "torch_compile_backend": "eager"} if compile_model else {}
    trainer = SGDRTrainer(
        model=tiny_gpt2(),
        args=training_args(folder, max_steps=6, **extra),
        train_dataset=byte_lm_data(24),
        sgdr_T_0=3,
    )
    trainer.train()
    return folder / "snapshots"


def test_trainer_torch_compile_writes_the_snapshots_of_the_uncompiled_model(tmp_path: Path) -> None:
    _assert_same_snapshots(_trainer_run(tmp_path / "compiled", True), _trainer_run(tmp_path / "plain", False))


def _accelerate_run(folder: Path, compile_model: bool) -> Path:
    tiny_accelerate_run(folder, compile_model=compile_model, swa_start=0.5)
    return folder / "snapshots"


def test_compiled_model_in_an_accelerate_loop_writes_the_snapshots_of_the_uncompiled_model(tmp_path: Path) -> None:
    _assert_same_snapshots(_accelerate_run(tmp_path / "compiled", True), _accelerate_run(tmp_path / "plain", False))
