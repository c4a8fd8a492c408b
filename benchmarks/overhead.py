"""The package's cost, side by side, in one entry point over the two existing benchmarks:

1. training: `SGDRTrainer` (SGDR scheduler, `SGDRCallback`, a snapshot written at every cycle end, the
   optimizer state reset at every restart) against the stock `Trainer` with `lr_scheduler_type="cosine"`,
   same MiniLM model, SST-2 slice, steps, batch and seed; a warm-up run, then the two alternate (A B, B A, ...)
   in one process; medians and the time attributable to SGDR reported (`training_overhead.compare`);
2. evaluation: `SnapshotEnsemble.evaluate` over K snapshots against K single evaluations, i.e. K forward
   passes of one loaded model (reference) and K `Trainer.predict` calls (naive); each measurement in a fresh
   process, modes rotated over the repeats (`ensemble_eval`).

    python benchmarks/overhead.py            # default scale; --quick for a smoke run
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import ensemble_eval
import training_overhead
from _common import RESULTS, LoadMonitor, conditions_text, machine_info, markdown_table, setup_logging, write_results

logger = logging.getLogger("benchmarks.overhead")

QUICK = {
    "steps": 4,
    "batch_size": 4,
    "snapshots": 2,
    "repeats": 1,
    "eval_snapshots": 2,
    "eval_samples": 32,
    "eval_repeats": 1,
    "modes": ["ensemble", "reference"],
    "in_process": True,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=250, help="optimizer steps per training run")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--snapshots", type=int, default=5, help="SGDR cycles = snapshots written (K)")
    parser.add_argument("--repeats", type=int, default=3, help="cosine/SGDR pairs after the warm-up run")
    parser.add_argument("--window", type=int, default=3, help="steps counted from each snapshot step on")
    parser.add_argument("--eval_snapshots", type=int, default=5, help="K for the evaluation comparison")
    parser.add_argument("--eval_samples", type=int, default=872, help="SST-2 validation sentences (872 = all)")
    parser.add_argument("--eval_batch_size", type=int, default=32)
    parser.add_argument("--eval_repeats", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=list(ensemble_eval.MODES), choices=ensemble_eval.MODES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--in_process", action="store_true", help="measure evaluation in this process (faster; memory not isolated)"
    )
    parser.add_argument("--work_dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--results_dir", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="smoke run (4 steps, K=2, 1 repeat, in process)")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    if "reference" not in args.modes:
        parser.error("--modes must include reference (the ratios divide by it)")
    return args


def training_cost(args: argparse.Namespace, load: LoadMonitor) -> dict[str, Any]:
    """Interleaved `Trainer`+cosine / `SGDRTrainer` runs (`training_overhead.compare`): wall and
    training-thread CPU time of `train()`, and the time SGDR adds where it acts."""
    from transformers import AutoModelForSequenceClassification, set_seed

    options = argparse.Namespace(
        max_steps=args.steps, batch_size=args.batch_size, snapshots=args.snapshots, repeats=args.repeats
    )
    data = training_overhead.build_data(args.steps * args.batch_size, args.max_length)
    set_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(training_overhead.MODEL_ID, num_labels=2)
    root = Path(tempfile.mkdtemp(prefix="hf_sgdr_overhead_", dir=args.work_dir))
    runs: dict[str, list[dict[str, float]]] = {"cosine": [], "sgdr": []}

    def record(kind: str, timing: training_overhead.RunTiming) -> None:
        runs[kind].append({"wall_s": timing.wall, "thread_cpu_s": timing.cpu, "load": load.sample()})

    try:
        comparison = training_overhead.compare(
            options, base, data, root, iterate=lambda kinds: tqdm(kinds, desc="training runs", unit="run"),
            after_run=record,
        )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out: dict[str, Any] = {"runs": runs}
    for metric in ("wall_s", "thread_cpu_s"):
        cosine = statistics.median(r[metric] for r in runs["cosine"])
        sgdr = statistics.median(r[metric] for r in runs["sgdr"])
        pairs = [100 * (s[metric] - c[metric]) / c[metric] for c, s in zip(runs["cosine"], runs["sgdr"], strict=True)]
        out[metric] = {"cosine_median": cosine, "sgdr_median": sgdr, "overhead_pct": 100 * (sgdr - cosine) / cosine}
        out[metric]["pair_overheads_pct"] = pairs
    out["attributable"] = comparison.attributable(args.window)
    out["attributable_pct_median"] = statistics.median(row["attributable_pct"] for row in out["attributable"])
    out["callback_s_per_run"] = statistics.mean(comparison.callback_seconds)
    out["writer_s_per_snapshot"] = comparison.writer_seconds_per_snapshot
    return out


def evaluation_cost(args: argparse.Namespace, load: LoadMonitor) -> dict[str, Any]:
    """`SnapshotEnsemble.evaluate` against K single evaluations, each measurement in its own process."""
    folder = args.work_dir / f"hf_sgdr_overhead_snapshots_k{args.eval_snapshots}_len{args.max_length}"
    options = argparse.Namespace(
        work_dir=str(folder),
        num_snapshots=args.eval_snapshots,
        eval_samples=args.eval_samples,
        max_length=args.max_length,
        batch_size=args.eval_batch_size,
        threads=args.threads,
    )
    ensemble_eval.make_snapshots(folder, args.eval_snapshots, args.max_length)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    order = [args.modes[r % len(args.modes) :] + args.modes[: r % len(args.modes)] for r in range(args.eval_repeats)]
    for mode in tqdm([m for modes in order for m in modes], desc="evaluation measurements", unit="process"):
        if args.in_process:
            runs[mode].append(ensemble_eval.measure(argparse.Namespace(**vars(options), measure=mode)))
        else:
            runs[mode].append(ensemble_eval._run_child(options, mode))
        load.sample()
    summary = {mode: ensemble_eval._summary(rs) for mode, rs in runs.items()}
    reference = summary["reference"]
    for values in summary.values():
        values["x_reference_wall_median"] = values["wall_median"] / reference["wall_median"]
        values["x_reference_cpu_median"] = values["cpu_median"] / reference["cpu_median"]
    return {"runs": runs, "summary": summary}


def render(payload: dict[str, Any]) -> str:
    config, train, evaluation = payload["config"], payload["training"], payload["evaluation"]
    training_rows = []
    for metric, label in (("wall_s", "`train()` wall time"), ("thread_cpu_s", "training-thread CPU time")):
        m = train[metric]
        pairs = ", ".join(f"{p:+.1f}" for p in m["pair_overheads_pct"])
        training_rows.append(
            [label, f"{m['cosine_median']:.2f}", f"{m['sgdr_median']:.2f}", f"{m['overhead_pct']:+.1f} %", pairs]
        )
    per_pair = ", ".join(f"{row['attributable_pct']:+.2f}" for row in train["attributable"])
    labels = {
        "naive": f"naive: {config['eval_snapshots']} × `Trainer.predict`, then average",
        "ensemble": "`SnapshotEnsemble.evaluate` (every snapshot, every last-k ensemble)",
        "reference": f"reference: {config['eval_snapshots']} forward passes of one loaded model",
    }
    eval_rows = [
        [
            labels[mode],
            f"{m['wall_median']:.1f}",
            f"{m['x_reference_wall_median']:.2f}",
            f"{m['cpu_median']:.1f}",
            f"{m['x_reference_cpu_median']:.2f}",
            f"{m['rss_median']:.0f}",
            int(m["resident"]),
        ]
        for mode, m in evaluation["summary"].items()
    ]
    return "\n".join(
        [
            "# Overhead of hf_sgdr: training and ensemble evaluation",
            "",
            f"## Training: `SGDRTrainer` (K={config['snapshots']} snapshots + optimizer reset) vs `Trainer` + cosine",
            "",
            f"MiniLM + 2-label head, SST-2, {config['steps']} steps of batch {config['batch_size']}, max_length "
            f"{config['max_length']}; {config['repeats']} interleaved pairs after an untimed warm-up run; medians.",
            "",
            markdown_table(
                ["seconds (median)", "Trainer, cosine", "SGDRTrainer", "overhead (medians)", "per pair (%)"],
                training_rows,
            ),
            "",
            f"Attributable to SGDR (the steps from each snapshot on beyond the local typical step, minus the same "
            f"steps of the cosine run, plus the tail of `train()` and the callback's time), median over pairs: "
            f"**{train['attributable_pct_median']:+.2f} %** of the cosine run (per pair: "
            f"{per_pair} %).",
            "",
            f"SGDR callback on the training thread: {train['callback_s_per_run']:.3f} s per run; background "
            f"snapshot writer: {train['writer_s_per_snapshot']:.3f} s per snapshot (overlaps training).",
            "",
            f"## Evaluation: K={config['eval_snapshots']} snapshots on {config['eval_samples']} SST-2 validation "
            "sentences",
            "",
            markdown_table(
                [
                    "way",
                    "wall s (median)",
                    "x reference",
                    "CPU s (median)",
                    "x reference (CPU)",
                    "peak RSS over baseline, MB",
                    "resident models",
                ],
                eval_rows,
            ),
            "",
            conditions_text(payload["machine"], payload["load_average"], payload["total_wall_s"]),
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started, load = time.time(), LoadMonitor()
    payload: dict[str, Any] = {
        "benchmark": "overhead",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "training": training_cost(args, load),
        "evaluation": evaluation_cost(args, load),
        "machine": machine_info(),
    }
    payload["load_average"] = load.summary()
    payload["total_wall_s"] = time.time() - started
    markdown = render(payload)
    write_results("overhead_quick" if args.quick else "overhead", payload, markdown, args.results_dir)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
