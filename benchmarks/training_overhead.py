"""Training wall time of `SGDRTrainer` (snapshots at 5 cycle ends, optimizer resets) against the stock
`Trainer` with the `cosine` schedule: same model (all-MiniLM-L6-v2 + a 2-label head), same GLUE SST-2
slice, same steps, batch and seed.

The two configurations alternate (warm-up run first, then A B, B A, ...) in one process so that the
load of a shared machine falls on both alike. Besides the wall time of `trainer.train()` (which for
SGDR includes waiting for the last snapshot write), it times every optimizer step, the SGDR callback
on the training thread (event queries, the CPU copy of the weights, handing over to the writer) and
the background writer per snapshot.

The whole-run difference is reported, but on a shared VM the speed of identical runs drifts by more
than the target (+-10 % seen here). So it also reports the time attributable to SGDR (`Comparison.
attributable`): the steps from each snapshot on beyond the local typical step, minus the same steps
of the cosine run, plus the difference of the tails of `train()` and the callback's own time.

    HF_HUB_OFFLINE=1 python benchmarks/training_overhead.py --repeats 4 --max_steps 250 --threads 1

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
    set_seed,
)

from _common import arm_trainer
from hf_sgdr.snapshot_format.manifest import SnapshotManifest
from hf_sgdr.training import SGDRCallback, SnapshotWriter

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Stopwatch:
    """Accumulates the time spent in wrapped functions."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


@functools.cache
def instrument() -> tuple[Stopwatch, Stopwatch]:
    """Time the SGDR callback's hooks (training thread) and the writer's snapshot job (background)."""
    foreground, background = Stopwatch(), Stopwatch()
    for hook in ("on_train_begin", "on_step_end", "on_log", "on_evaluate", "on_save"):
        setattr(SGDRCallback, hook, foreground.wrap(getattr(SGDRCallback, hook)))
    SnapshotWriter._write_snapshot = background.wrap(SnapshotWriter._write_snapshot)
    return foreground, background


class StepClock(TrainerCallback):
    """Wall time of every optimizer step (from `on_step_begin` to the end of `on_step_end`: it runs
    after the SGDR callback, so a step's time includes the snapshot copy)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.wall.append(time.perf_counter() - self._start)


@dataclass
class RunTiming:
    """One `trainer.train()`: totals, per-step times (index i = step i + 1) and the snapshot steps."""

    wall: float
    cpu: float
    step_wall: list[float]
    snapshot_steps: list[int]

    @property
    def tail(self) -> float:
        """Wall time of `train()` outside the optimizer steps (set-up, the wait for the last write, teardown)."""
        return self.wall - sum(self.step_wall)

    def event_excess(self, steps: list[int], window: int) -> float:
        """Seconds the `window` steps starting at each of `steps` took beyond the local typical step
        (the median of the 20 steps around, outside the windows): the cost of what happened there,
        insensitive to the slow drift of a shared machine's speed between and within runs."""
        times = self.step_wall
        inside = {s - 1 + j for s in steps for j in range(window)}
        excess = 0.0
        for step in steps:
            neighbours = range(max(0, step - 11), min(len(times), step + window + 10))
            around = [times[i] for i in neighbours if i not in inside]
            typical = statistics.median(around or times)
            excess += sum(times[i] - typical for i in range(step - 1, min(len(times), step - 1 + window)))
        return excess


def build_data(num_examples: int, max_length: int) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
    data = load_dataset("nyu-mll/glue", "sst2")["train"].select(range(num_examples))
    data = data.map(
        lambda batch: tokenizer(batch["sentence"], truncation=True, max_length=max_length, padding="max_length"),
        batched=True,
    )
    return data.remove_columns(["sentence", "idx"])


def run_once(kind: str, base: torch.nn.Module, data: Any, options: argparse.Namespace, root: Path) -> RunTiming:
    """One training run, timed."""
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
    clock = StepClock()
    trainer = arm_trainer(
        kind,
        model,
        common,
        data,
        [clock],
        sgdr_num_cycles=options.snapshots,
        max_snapshots=options.snapshots,
        sgdr_reset_optimizer_state=True,
    )
    start, start_cpu = time.perf_counter(), time.thread_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - start, time.thread_time() - start_cpu
    snapshot_steps = []
    if kind == "sgdr":
        snapshot_steps = [r.global_step for r in SnapshotManifest.load(output_dir / "snapshots").snapshots]
        assert len(snapshot_steps) == options.snapshots, f"expected {options.snapshots} snapshots: {snapshot_steps}"
    shutil.rmtree(output_dir, ignore_errors=True)
    return RunTiming(seconds, cpu_seconds, clock.wall, snapshot_steps)


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def overhead(baseline: list[float], candidate: list[float], statistic: Callable[[list[float]], float]) -> str:
    return f"{100 * (statistic(candidate) - statistic(baseline)) / statistic(baseline):+.2f} %"


@dataclass
class Comparison:
    """Interleaved `Trainer` + cosine / `SGDRTrainer` runs (pair i = `cosine[i]`, `sgdr[i]`)."""

    cosine: list[RunTiming]
    sgdr: list[RunTiming]
    callback_seconds: list[float]  # the SGDR callback's own time on the training thread, per SGDR run
    writer_seconds_per_snapshot: float  # the background writer (overlaps training)

    def attributable(self, window: int) -> list[dict[str, float]]:
        """Per pair, the time SGDR adds where it acts: the `window` steps from each snapshot step on,
        beyond the local typical step, minus the same steps of the cosine run; the difference of the
        tails of `train()` (the SGDR one waits for the last write); the callback's own time on every
        step (an upper bound: it also counts the snapshot copy, already in the first term). Unlike the
        difference of the whole runs, it is not swamped by the drift of a shared machine's speed."""
        rows = []
        for cosine, sgdr, callback in zip(self.cosine, self.sgdr, self.callback_seconds, strict=True):
            steps = sgdr.snapshot_steps
            windows = sgdr.event_excess(steps, window) - cosine.event_excess(steps, window)
            tail = sgdr.tail - cosine.tail
            seconds = windows + tail + callback
            rows.append(
                {
                    "median_step_cosine_s": statistics.median(cosine.step_wall),
                    "median_step_sgdr_s": statistics.median(sgdr.step_wall),
                    "snapshot_windows_s": windows,
                    "tail_s": tail,
                    "callback_s": callback,
                    "attributable_s": seconds,
                    "attributable_pct": 100 * seconds / cosine.wall,
                    "whole_run_pct": 100 * (sgdr.wall - cosine.wall) / cosine.wall,
                }
            )
        return rows


def compare(
    options: argparse.Namespace,
    base: torch.nn.Module,
    data: Any,
    root: Path,
    *,
    iterate: Callable[[list[str]], Iterable[str]] = iter,
    after_run: Callable[[str, RunTiming], None] | None = None,
) -> Comparison:
    """A warm-up run (cosine, untimed), then `options.repeats` pairs alternating A B, B A, ... under
    `root`. `iterate` wraps the run order (e.g. a progress bar); `after_run` sees every timed run."""
    foreground, background = instrument()
    run_once("cosine", base, data, options, root)
    background.seconds = 0.0
    order = [("cosine", "sgdr") if r % 2 == 0 else ("sgdr", "cosine") for r in range(options.repeats)]
    runs: dict[str, list[RunTiming]] = {"cosine": [], "sgdr": []}
    callback_seconds = []
    for kind in iterate([kind for pair in order for kind in pair]):
        foreground.seconds = 0.0
        timing = run_once(kind, base, data, options, root)
        runs[kind].append(timing)
        if kind == "sgdr":
            callback_seconds.append(foreground.seconds)
        if after_run is not None:
            after_run(kind, timing)
    writer = background.seconds / max(options.repeats * options.snapshots, 1)
    return Comparison(runs["cosine"], runs["sgdr"], callback_seconds, writer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="A/B pairs after the warm-up run")
    parser.add_argument("--max_steps", type=int, default=250)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--snapshots", type=int, default=5, help="cycles = snapshots kept (K)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--window", type=int, default=3, help="steps counted from each snapshot step on")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)

    data = build_data(options.max_steps * options.batch_size, options.max_length)
    set_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)
    root = Path(tempfile.mkdtemp(prefix="hf_sgdr_bench_"))
    loads = []

    def report(kind: str, timing: RunTiming) -> None:
        loads.append(os.getloadavg()[0])
        print(f"{kind:6s} wall {timing.wall:.2f} s, thread CPU {timing.cpu:.2f} s", flush=True)

    try:
        result = compare(options, base, data, root, after_run=report)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print()
    sgdr_label = f"SGDRTrainer, K={options.snapshots} + reset"
    print(f"| {options.repeats} runs each, seconds | Trainer, cosine | {sgdr_label} | overhead |")
    print("| --- | --- | --- | --- |")
    for label, field_name in (("train() wall time", "wall"), ("training-thread CPU time", "cpu")):
        cosine = [getattr(run, field_name) for run in result.cosine]
        sgdr = [getattr(run, field_name) for run in result.sgdr]
        print(
            f"| {label}, mean ± sd | {summary(cosine)} | {summary(sgdr)} | {overhead(cosine, sgdr, statistics.mean)} |"
        )
        print(
            f"| {label}, median | {statistics.median(cosine):.2f} | {statistics.median(sgdr):.2f} | "
            f"{overhead(cosine, sgdr, statistics.median)} |"
        )
        pairs = ", ".join(f"{100 * (s - c) / c:+.1f}" for c, s in zip(cosine, sgdr, strict=True))
        print(f"| {label}, per pair (%) | | | {pairs} |")
    print()
    rows = result.attributable(options.window)
    print(f"| pair | median step, cosine / SGDR (s) | snapshot steps +{options.window - 1} | tail | callback | "
          "attributable | whole-run difference |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for pair, row in enumerate(rows):
        print(
            f"| {pair} | {row['median_step_cosine_s']:.3f} / {row['median_step_sgdr_s']:.3f} | "
            f"{row['snapshot_windows_s']:+.2f} s | {row['tail_s']:+.2f} s | {row['callback_s']:.2f} s | "
            f"{row['attributable_s']:+.2f} s ({row['attributable_pct']:+.2f} %) | {row['whole_run_pct']:+.2f} % |"
        )
    median_share = statistics.median(row["attributable_pct"] for row in rows)
    print(f"attributable overhead, median over pairs: {median_share:+.2f} % of the cosine run")
    print()
    print(f"SGDR callback on the training thread: {statistics.mean(result.callback_seconds):.3f} s per run")
    print(f"background writer: {result.writer_seconds_per_snapshot:.3f} s per snapshot")
    print(f"1-minute load average after each run: {', '.join(f'{x:.1f}' for x in loads)} ({os.cpu_count()} CPUs)")
    print(
        f"conditions: {platform.platform()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {options.max_steps} steps, batch {options.batch_size}, "
        f"max_length {options.max_length}"
    )


if __name__ == "__main__":
    main()
