"""Training wall time of `SGDRTrainer` (snapshots at 5 cycle ends, optimizer resets) against the stock
`Trainer` with the `cosine` schedule: same model (all-MiniLM-L6-v2 + a 2-label head), same GLUE SST-2
slice, same steps, batch and seed.

The two configurations alternate (warm-up run first, then A B A B ...) in one process so that the
load of a shared machine falls on both alike. Besides the wall time of `trainer.train()` (which for
SGDR includes waiting for the last snapshot write), it measures the time the SGDR callback spends on
the training thread (event queries, the CPU copy of the weights, handing over to the writer) and the
time the background writer spends per snapshot.

    HF_HUB_OFFLINE=1 python benchmarks/training_overhead.py --repeats 4 --max_steps 250

Run it with the offline Hugging Face cache of ../shared/hf-offline in place (see its README).
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from datasets import load_dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, set_seed

from hf_sgdr.training import SGDRCallback, SGDRTrainer, SnapshotWriter

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Stopwatch:
    """Accumulates the time spent in wrapped functions."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed


def instrument() -> tuple[Stopwatch, Stopwatch]:
    """Time the SGDR callback's hooks (training thread) and the writer's snapshot job (background)."""
    foreground, background = Stopwatch(), Stopwatch()
    for hook in ("on_train_begin", "on_step_end", "on_log", "on_evaluate", "on_save"):
        setattr(SGDRCallback, hook, foreground.wrap(getattr(SGDRCallback, hook)))
    SnapshotWriter._write_snapshot = background.wrap(SnapshotWriter._write_snapshot)
    return foreground, background


def build_data(num_examples: int, max_length: int) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
    data = load_dataset("nyu-mll/glue", "sst2")["train"].select(range(num_examples))
    data = data.map(
        lambda batch: tokenizer(batch["sentence"], truncation=True, max_length=max_length, padding="max_length"),
        batched=True,
    )
    return data.remove_columns(["sentence", "idx"])


def run_once(
    kind: str, base: torch.nn.Module, data: Any, options: argparse.Namespace, root: Path
) -> tuple[float, float]:
    """One training run; returns the wall time and the training thread's CPU time of `trainer.train()`."""
    output_dir = root / kind
    common = {
        "output_dir": str(output_dir),
        "max_steps": options.max_steps,
        "per_device_train_batch_size": options.batch_size,
        "learning_rate": 5e-5,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 50,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": 0,
    }
    set_seed(0)
    model = copy.deepcopy(base)
    if kind == "cosine":
        trainer: Trainer = Trainer(
            model=model, args=TrainingArguments(lr_scheduler_type="cosine", **common), train_dataset=data
        )
    else:
        trainer = SGDRTrainer(
            model=model,
            args=TrainingArguments(**common),
            train_dataset=data,
            sgdr_num_cycles=options.snapshots,
            max_snapshots=options.snapshots,
            sgdr_reset_optimizer_state=True,
        )
    start, start_cpu = time.perf_counter(), time.thread_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - start, time.thread_time() - start_cpu
    if kind == "sgdr":
        written = len(list((output_dir / "snapshots").glob("cycle-*")))
        assert written == options.snapshots, f"expected {options.snapshots} snapshots, found {written}"
    shutil.rmtree(output_dir, ignore_errors=True)
    return seconds, cpu_seconds


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def overhead(baseline: list[float], candidate: list[float], statistic: Callable[[list[float]], float]) -> str:
    return f"{100 * (statistic(candidate) - statistic(baseline)) / statistic(baseline):+.2f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="A/B pairs after the warm-up run")
    parser.add_argument("--max_steps", type=int, default=250)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--snapshots", type=int, default=5, help="cycles = snapshots kept (K)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)

    foreground, background = instrument()
    data = build_data(options.max_steps * options.batch_size, options.max_length)
    set_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)
    root = Path(tempfile.mkdtemp(prefix="hf_sgdr_bench_"))
    wall: dict[str, list[float]] = {"cosine": [], "sgdr": []}
    cpu: dict[str, list[float]] = {"cosine": [], "sgdr": []}
    loads = []
    try:
        print(f"warm-up (cosine): {run_once('cosine', base, data, options, root)[0]:.2f} s", flush=True)
        foreground.seconds = background.seconds = 0.0
        foreground.calls = background.calls = 0
        for repeat in range(options.repeats):
            order = ("cosine", "sgdr") if repeat % 2 == 0 else ("sgdr", "cosine")
            for kind in order:
                seconds, cpu_seconds = run_once(kind, base, data, options, root)
                wall[kind].append(seconds)
                cpu[kind].append(cpu_seconds)
                loads.append(os.getloadavg()[0])
                print(f"repeat {repeat} {kind:6s} wall {seconds:.2f} s, thread CPU {cpu_seconds:.2f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print()
    sgdr_label = f"SGDRTrainer, K={options.snapshots} + reset"
    print(f"| {options.repeats} runs each, seconds | Trainer, cosine | {sgdr_label} | overhead |")
    print("| --- | --- | --- | --- |")
    for label, values in (("train() wall time", wall), ("training-thread CPU time", cpu)):
        cosine, sgdr = values["cosine"], values["sgdr"]
        print(
            f"| {label}, mean ± sd | {summary(cosine)} | {summary(sgdr)} | {overhead(cosine, sgdr, statistics.mean)} |"
        )
        print(
            f"| {label}, median | {statistics.median(cosine):.2f} | {statistics.median(sgdr):.2f} | "
            f"{overhead(cosine, sgdr, statistics.median)} |"
        )
        print(f"| {label}, min | {min(cosine):.2f} | {min(sgdr):.2f} | {overhead(cosine, sgdr, min)} |")
        pairs = ", ".join(f"{100 * (s - c) / c:+.1f}" for c, s in zip(cosine, sgdr, strict=True))
        print(f"| {label}, per pair (%) | | | {pairs} |")
    print()
    share = 100 * foreground.seconds / sum(wall["sgdr"])
    print(
        f"SGDR callback on the training thread: {foreground.seconds / options.repeats:.3f} s per run "
        f"({share:.2f} % of the SGDR wall time), {foreground.calls // options.repeats} calls per run"
    )
    print(f"background writer: {background.seconds / max(options.repeats * options.snapshots, 1):.3f} s per snapshot")
    print(f"1-minute load average after each run: {', '.join(f'{x:.1f}' for x in loads)} ({os.cpu_count()} CPUs)")
    print(
        f"conditions: {platform.platform()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {options.max_steps} steps, batch {options.batch_size}, "
        f"max_length {options.max_length}"
    )


if __name__ == "__main__":
    main()
