"""Shared helpers of the training tests: real models and data, `TrainingArguments`, two-process
launches, result inspection. Subprocess scripts put `tests/` on `sys.path` to import them too."""

from __future__ import annotations

import copy
import functools
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from datasets import Dataset, load_dataset
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from hf_sgdr import SGDRAccelerateHelper, SGDRScheduler
from hf_sgdr.snapshot_format.digests import digest_files
from hf_sgdr.snapshot_format.manifest import SnapshotManifest, SnapshotRecord

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LENGTH = 32
BLOCK = 32


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


def tiny_accelerate_run(
    output_dir: Path, *, T_0: int = 3, compile_model: bool = False, **helper_kwargs: Any
) -> SGDRAccelerateHelper:
    """A plain Accelerate loop (seed 0, CPU): tiny GPT-2 over 6 batches of byte blocks, `SGDRAccelerateHelper`
    writing snapshots under `output_dir`; `torch.compile` after `prepare` when asked."""
    set_seed(0)
    accelerator = Accelerator(cpu=True)
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(byte_lm_data(24), batch_size=4, collate_fn=default_data_collator)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if compile_model:
        model = torch.compile(model, backend="eager")
    scheduler = SGDRScheduler(optimizer, T_0=T_0)
    sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=output_dir, **helper_kwargs)
    for batch in loader:
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        sgdr.step(loss=loss)
    sgdr.end()
    return sgdr


# ---------------------------------------------------------------------- two processes
def launch_two_cpu_processes(*command: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run `accelerate launch` with 2 CPU processes (gloo) on a free port; returns the completed process.

    ``accelerate launch --cpu`` starts one process, hence ``--multi_gpu`` with ``ACCELERATE_USE_CPU=1``. Past
    `timeout` every process of the launch is killed and the test fails with the ranks' last output.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(port)]  # fmt: skip
    process = subprocess.Popen(
        [*launch, *command],
        env={**os.environ, **(env or {}), "ACCELERATE_USE_CPU": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a hang is ended with every rank, not only the launcher
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        raise AssertionError(f"the two processes did not finish in {timeout} s:\n{stderr[-4000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


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
    assert digest_files({name: folder / name for name in record.files}) == record.files


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
