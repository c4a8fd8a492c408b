"""Shared helpers of the training tests (real models, real data) and unit tests of the small pieces:
the running average's window, weight capture, model description and the background writer.

The other `test_training_*` modules import the helpers from here (pytest puts `tests/` on the path).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset, load_dataset
from safetensors.torch import load_file
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from hf_sgdr.atomic import sha256_file
from hf_sgdr.snapshots.manifest import SnapshotManifest, SnapshotRecord
from hf_sgdr.training import (
    CycleAverager,
    SnapshotWriteError,
    SnapshotWriter,
    capture_weights,
    describe_model,
    save_weights,
)
from hf_sgdr.training.writer import snapshot_name

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LENGTH = 32
BLOCK = 32


# ---------------------------------------------------------------------- test set-up
@pytest.fixture
def one_thread():
    """One intra-op thread: these models are tiny, and on a shared 2-core machine a second thread only
    adds contention (a 3-10x slowdown measured here). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- models and data
@functools.lru_cache(maxsize=1)
def _minilm_base() -> torch.nn.Module:
    set_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)


def minilm() -> torch.nn.Module:
    """A fresh copy of all-MiniLM-L6-v2 with a 2-label head (the same head init in every test)."""
    return copy.deepcopy(_minilm_base())


@functools.lru_cache(maxsize=1)
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(MODEL_ID)


@functools.lru_cache(maxsize=4)
def sst2(split: str, n: int) -> Dataset:
    """The first `n` sentences of GLUE SST-2 `split`, tokenized to `MAX_LENGTH` tokens."""
    data = load_dataset("nyu-mll/glue", "sst2")[split].select(range(n))
    tok = tokenizer()
    data = data.map(
        lambda batch: tok(batch["sentence"], truncation=True, max_length=MAX_LENGTH, padding="max_length"),
        batched=True,
    )
    return data.remove_columns(["sentence", "idx"])


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    """A 2-layer GPT-2 (n_embd 64) over bytes, freshly initialised with `seed`."""
    set_seed(seed)
    config = GPT2Config(
        n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=BLOCK, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config)


@functools.lru_cache(maxsize=4)
def _byte_blocks(n: int) -> tuple[tuple[int, ...], ...]:
    text = " ".join(load_dataset("nyu-mll/glue", "sst2")["train"]["sentence"][: n * 8]).encode()
    return tuple(tuple(text[i * BLOCK : (i + 1) * BLOCK]) for i in range(n))


def byte_lm_data(n: int) -> list[dict[str, list[int]]]:
    """`n` blocks of `BLOCK` bytes of SST-2 text, as causal-LM examples."""
    return [{"input_ids": list(block), "labels": list(block)} for block in _byte_blocks(n)]


def training_args(output_dir: Path, **overrides: Any) -> TrainingArguments:
    """Fast, quiet, CPU-only `TrainingArguments` (no checkpoints, no reporting) with `overrides`."""
    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1000,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": 0,
    }
    values.update(overrides)
    return TrainingArguments(**values)


# ---------------------------------------------------------------------- two processes
def launch_two_cpu_processes(*command: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run `accelerate launch` with 2 CPU processes (gloo) on a free port; returns the completed process.

    ``accelerate launch --cpu`` starts one process, hence ``--multi_gpu`` with ``ACCELERATE_USE_CPU=1``.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(port)]  # fmt: skip
    return subprocess.run(
        [*launch, *command],
        env={**os.environ, **(env or {}), "ACCELERATE_USE_CPU": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clean_exit(result: subprocess.CompletedProcess) -> None:
    """Both processes exited 0, without an abort in the process-group teardown."""
    assert result.returncode == 0 and "terminate called" not in result.stderr, result.stderr[-4000:]


# ---------------------------------------------------------------------- inspecting results
def read_manifest(snapshot_dir: Path) -> SnapshotManifest:
    return SnapshotManifest.load(snapshot_dir)


def snapshot_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a snapshot folder's (single) safetensors file."""
    (path,) = [p for p in folder.iterdir() if p.suffix == ".safetensors"]
    return load_file(str(path))


def assert_checksums(snapshot_dir: Path, record: SnapshotRecord) -> None:
    """Every file the record lists is there with its size and SHA-256, and nothing else is."""
    folder = snapshot_dir / record.name
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert on_disk == sorted(record.files)
    for name, expected in record.files.items():
        assert sha256_file(folder / name) == expected.sha256
        assert (folder / name).stat().st_size == expected.size


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


class StepRecorder(TrainerCallback):
    """Records, after every optimizer step, the scheduler's counter and lrs and (optionally) the
    trainable weights and a summary of the optimizer state. Add it after the SGDR callback."""

    def __init__(self, weights: bool = False, optimizer_state: bool = False) -> None:
        self.steps: list[int] = []
        self.scheduler_steps: list[int] = []
        self.lrs: list[list[float]] = []
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.optimizer_state: dict[int, dict[str, Any]] = {}
        self._record_weights = weights
        self._record_optimizer = optimizer_state

    def on_step_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        self.steps.append(state.global_step)
        self.scheduler_steps.append(lr_scheduler.last_epoch)
        self.lrs.append([float(lr) for lr in lr_scheduler.get_last_lr()])
        if self._record_weights:
            self.weights[state.global_step] = {
                name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
            }
        if self._record_optimizer:
            entries = list(optimizer.state.values())
            self.optimizer_state[state.global_step] = {
                "steps": sorted({float(entry["step"]) for entry in entries}),
                "max_exp_avg": max(float(entry["exp_avg"].abs().max()) for entry in entries),
                "max_exp_avg_sq": max(float(entry["exp_avg_sq"].abs().max()) for entry in entries),
            }


# ---------------------------------------------------------------------- unit tests
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
