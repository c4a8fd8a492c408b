"""Snapshot-ensemble evaluation: the naive way against `SnapshotEnsemble`, side by side.

- naive: one `Trainer.predict` per snapshot (each loads its model, builds its dataloader and collates
  every batch again), then the K outputs are averaged;
- ensemble: `SnapshotEnsemble.from_pretrained(folder).evaluate(dataloader, soups=False)` (every snapshot
  alone and the ensemble of the last k for every k; batches collated once, one compute module, the next
  snapshot prefetched by a background thread, checksums verified before loading);
- reference: one model already loaded, K plain forward passes over batches collated beforehand: the
  target is the ensemble within 1.1x of this time, with at most two models resident.

Each measurement runs in a fresh process (so its peak memory is its own) that loads one snapshot once before
anything is measured (first-use imports are not a mode's cost), the modes are interleaved over the repeats
(other jobs share the machine), and the medians go to a Markdown report.

Needs MiniLM and GLUE SST-2 from the Hub or an offline cache (see ../shared/hf-offline/README.md):
    python benchmarks/ensemble_eval.py --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODES = ("naive", "ensemble", "reference")
HERE = Path(__file__).resolve().parent


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_snapshots", type=int, default=5)
    parser.add_argument("--eval_samples", type=int, default=872, help="SST-2 validation examples (872 = all)")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per measurement (1: stable ratios on a shared machine)"
    )
    parser.add_argument("--work_dir", default=str(Path(tempfile.gettempdir()) / "hf_sgdr_ensemble_bench"))
    parser.add_argument("--output", default=str(HERE / "results" / "ensemble_eval.md"))
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)  # internal: one measurement
    return parser.parse_args()


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """Samples this process's RSS every 5 ms in a thread; `peak` is the largest value seen."""

    def __init__(self) -> None:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def make_snapshots(folder: Path, count: int, max_length: int) -> Path:
    """K MiniLM snapshots from a short SGDR fine-tuning run on SST-2 train (kept for later runs)."""
    if (folder / "manifest.json").is_file():
        return folder
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_sgdr import SGDRScheduler
    from hf_sgdr.data import text_dataloader
    from hf_sgdr.snapshots import SnapshotEnsemble

    tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
    train = load_dataset("nyu-mll/glue", "sst2", split="train[:480]")
    batches = list(
        text_dataloader(tokenizer, train["sentence"], labels=train["label"], max_length=max_length, batch_size=16)
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    steps = 6 * count
    scheduler = SGDRScheduler(optimizer, num_cycles=count, num_training_steps=steps, reset_optimizer_state=True)
    ends = set(scheduler.schedule.cycle_ends(steps))
    ensemble = SnapshotEnsemble(
        max_snapshots=count,
        tokenizer=tokenizer,
        task="sst2",
        schedule=scheduler.schedule,
        training={"learning_rate": 1e-4, "num_training_steps": steps, "dataset_name": "nyu-mll/glue"},
    )
    model.train()
    for step in range(steps):
        loss = model(**batches[step % len(batches)]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        if step + 1 in ends:
            ensemble.add_model(model, global_step=step + 1, scheduler_step=step + 1, train_loss=loss.item())
            print(f"snapshot {ensemble.num_snapshots}/{count} at step {step + 1}", flush=True)
    return ensemble.save_pretrained(folder)


def _eval_data(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The tokenised eval set (tokenised once, outside the timings), its collator and tokenizer."""
    from datasets import load_dataset
    from transformers import AutoTokenizer, DataCollatorWithPadding

    tokenizer = AutoTokenizer.from_pretrained(args.work_dir)
    data = load_dataset("nyu-mll/glue", "sst2", split="validation").select(range(args.eval_samples))
    tokenized = data.map(
        lambda b: tokenizer(b["sentence"], truncation=True, max_length=args.max_length),
        batched=True,
        remove_columns=["sentence", "idx"],
    )
    return tokenized, DataCollatorWithPadding(tokenizer), tokenizer


def _accuracy(logits: Any, labels: Any) -> float:
    import torch

    probs = torch.as_tensor(logits).double().softmax(-1).mean(0)
    return float((probs.argmax(-1) == torch.as_tensor(labels)).double().mean())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run one mode and return its wall time, memory and result (printed as JSON by the child process)."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    from hf_sgdr.snapshots import SnapshotEnsemble

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    tokenized, collator, _ = _eval_data(args)
    folder = Path(args.work_dir)
    names = [f"cycle-{i:03d}" for i in range(args.num_snapshots)]
    labels = tokenized["label"]
    alive: list[weakref.ref] = []
    resident = 0
    # Every mode starts with transformers' modeling code imported and used once, as the reference's timer does
    # (it starts after its model is loaded): what is timed is the mode's own work, not first-use imports.
    AutoModelForSequenceClassification.from_pretrained(folder / names[0])
    gc.collect()
    baseline = _rss()
    with PeakRSS() as peak:
        start, cpu_start = time.perf_counter(), time.process_time()
        if args.measure == "naive":
            outputs = []
            with tempfile.TemporaryDirectory() as scratch:
                for name in names:
                    model = AutoModelForSequenceClassification.from_pretrained(folder / name)
                    alive.append(weakref.ref(model))
                    resident = max(resident, sum(ref() is not None for ref in alive))
                    trainer = Trainer(
                        model=model,
                        data_collator=collator,
                        args=TrainingArguments(
                            output_dir=scratch,
                            per_device_eval_batch_size=args.batch_size,
                            report_to=[],
                            use_cpu=True,
                            disable_tqdm=True,
                        ),
                    )
                    outputs.append(trainer.predict(tokenized).predictions)
            accuracy = _accuracy(outputs, labels)
        elif args.measure == "ensemble":
            loader = DataLoader(tokenized, batch_size=args.batch_size, collate_fn=collator)
            ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
            evaluation = ensemble.evaluate(loader, soups=False)
            row = evaluation.row(f"ensemble (last {len(names)}, average)")
            resident, accuracy = evaluation.resident_models_peak, row.metrics["accuracy"]
        else:
            batches = list(DataLoader(tokenized, batch_size=args.batch_size, collate_fn=collator))
            model = AutoModelForSequenceClassification.from_pretrained(folder / names[-1]).eval()
            start, cpu_start = time.perf_counter(), time.process_time()  # K forward passes only
            outputs = []
            with torch.inference_mode():
                for _ in names:
                    inputs = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
                    outputs.append(torch.cat([model(**b).logits for b in inputs]))
            resident, accuracy = 1, _accuracy(torch.stack(outputs), labels)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    one_model = AutoModelForSequenceClassification.from_pretrained(folder / names[0])
    model_bytes = sum(p.numel() * p.element_size() for p in one_model.parameters())
    return {
        "mode": args.measure,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_delta_mb": (peak.peak - baseline) / 2**20,
        "baseline_rss_mb": baseline / 2**20,
        "model_mb": model_bytes / 2**20,
        "resident_models_peak": resident,
        "accuracy": accuracy,
        "load_average": os.getloadavg()[0],
    }


def _run_child(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    passed = ("work_dir", "num_snapshots", "eval_samples", "max_length", "batch_size", "threads")
    command = [sys.executable, __file__, "--measure", mode]
    command += [part for name in passed for part in (f"--{name}", str(getattr(args, name)))]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} measurement failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _conditions(args: argparse.Namespace, started: float, loads: list[float]) -> list[str]:
    import torch
    import transformers

    return [
        f"- Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU; "
        f"torch {torch.__version__} with {args.threads} thread(s) per measurement, transformers "
        f"{transformers.__version__}.",
        f"- Shared machine: other jobs ran at the same time; 1-minute load average during the runs "
        f"{min(loads):.1f} to {max(loads):.1f}. Modes interleaved (rotated order) over {args.repeats} repeats; "
        "fastest and median reported.",
        f"- Data: GLUE SST-2 validation, {args.eval_samples} sentences, max_length {args.max_length}, batch size "
        f"{args.batch_size}, dynamic padding; tokenised once before every timing (`datasets.map`).",
        f"- Model: {args.num_snapshots} snapshots of `{MODEL_ID}` (BERT, 6 layers, 22.7M parameters) from a short "
        "SGDR fine-tuning run on SST-2 train, loaded from safetensors.",
        f"- Total benchmark time {time.time() - started:.0f} s.",
    ]


def _summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Fastest and median wall time, median CPU time and memory over the repeats of one mode."""
    return {
        "wall_min": min(r["wall_s"] for r in runs),
        "wall_median": statistics.median(r["wall_s"] for r in runs),
        "cpu_median": statistics.median(r["cpu_s"] for r in runs),
        "rss_median": statistics.median(r["peak_rss_delta_mb"] for r in runs),
        "resident": max(r["resident_models_peak"] for r in runs),
        "accuracy": runs[0]["accuracy"],
        "model_mb": runs[0]["model_mb"],
    }


NOTES = """## Reading the figures

- *x reference* divides by the reference's figure: the fastest wall time (the least disturbed by the other
  jobs on this machine) and the median CPU time (all threads of the process).
- *peak RSS over baseline* is the largest resident set sampled every 5 ms during the timed part, minus the
  resident set just before it (data already tokenised). It includes activations and allocator caches: the
  reference, which holds exactly one model, shows what one model plus its activations cost.
- *resident models* counts model-sized weight sets alive at the same time: `SnapshotEnsemble`'s own counter
  (weak references to each module or state dict it materialises), weak references to each model for the
  naive way (the previous model is still referenced by the previous `Trainer` while the next one loads).
- The reference's accuracy is the last snapshot alone; the other two are the 5-snapshot ensemble.
"""


def report(args: argparse.Namespace) -> str:
    started = time.time()
    make_snapshots(Path(args.work_dir), args.num_snapshots, args.max_length)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES[repeat % 3 :] + MODES[: repeat % 3]:
            runs[mode].append(_run_child(args, mode))
            print(json.dumps(runs[mode][-1]), flush=True)
    summary = {mode: _summary(rs) for mode, rs in runs.items()}
    ref = summary["reference"]
    model_mb = ref["model_mb"]
    lines = [
        "# Snapshot-ensemble evaluation: naive vs `SnapshotEnsemble`",
        "",
        f"K = {args.num_snapshots} MiniLM snapshots; produced by `python benchmarks/ensemble_eval.py "
        f"--repeats {args.repeats} --threads {args.threads}`.",
        "",
        "| way | wall s (fastest / median) | x reference (fastest) | CPU s (median) | x reference (CPU) | "
        "peak RSS over baseline, MB (median) | resident models (peak) | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "naive": "naive: `Trainer.predict` per snapshot, then average",
        "ensemble": "`SnapshotEnsemble.from_pretrained(...).evaluate(..., soups=False)`",
        "reference": f"reference: {args.num_snapshots} forward passes of one loaded model",
    }
    for mode in MODES:
        m = summary[mode]
        lines.append(
            f"| {labels[mode]} | {m['wall_min']:.1f} / {m['wall_median']:.1f} | {m['wall_min'] / ref['wall_min']:.3f} "
            f"| {m['cpu_median']:.1f} | {m['cpu_median'] / ref['cpu_median']:.3f} | {m['rss_median']:.0f} "
            f"({m['rss_median'] / model_mb:.2f} models) | {m['resident']:.0f} | {m['accuracy']:.4f} |"
        )
    lines += [
        "",
        f"One model's parameters: {model_mb:.1f} MB (float32).",
        "",
        NOTES,
        "## Every run (in the order they ran within each repeat)",
        "",
        "| mode | wall (s) | CPU (s) | peak RSS over baseline (MB) | resident models | 1-min load average |",
        "|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        for r in runs[mode]:
            lines.append(
                f"| {mode} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_delta_mb']:.0f} | "
                f"{r['resident_models_peak']} | {r['load_average']:.1f} |"
            )
    loads = [r["load_average"] for rs in runs.values() for r in rs]
    lines += ["", "## Conditions", "", *_conditions(args, started, loads), ""]
    return "\n".join(lines)


def main() -> None:
    args = _arguments()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    text = report(args)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
