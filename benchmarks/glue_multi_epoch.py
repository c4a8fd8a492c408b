"""SST-2 fine-tuning of all-MiniLM-L6-v2 over several epochs of a small train subset: the regime that
snapshot ensembles are for (the final model overfits; members of similar quality), scored on accuracy and on
the probabilities (NLL, Brier, ECE), against what stock users already get.

Rows, all at the same training compute (same optimizer steps, batch, peak lr, warmup, seeds): transformers
`linear`, `cosine`, `cosine_with_restarts` (snapshotted at equal intervals), SGDR T_mult 1 and 2, and two cycle
lists (one long cycle, then short cycles at half its peak): `star` (`restart_from="first"`: every short
cycle starts from the first cycle's end with a fresh optimizer state) and `fge` (each from the last). For
each: the final model, the best snapshot chosen on validation NLL (what `load_best_model_at_end` with the
default `eval_loss` gives), ensembles of all / last k, the uniform and greedy soups, greedy selection,
temperature-scaled rows; plus the deep-ensemble anchor: the seeds' final cosine models averaged (3x the compute).

Stages, each resumable (a finished run writes its results at once; a re-run skips it):
  train    every (seed, schedule): train, keep the snapshots, evaluate on validation  -> RUN/run.json
  report   only once every run is trained: read the SST-2 holdout and evaluate every run on it, chosen on
           validation                                                                -> RUN/holdout.json
           then the deep-ensemble anchor and the tables (results/glue_multi_epoch.{md,json}, plots)

    eval "$(python ../shared/hf-offline/build_cache.py /tmp/hfhome)"
    python benchmarks/glue_multi_epoch.py --output_dir /tmp/bench/multi_epoch            # both stages
    python benchmarks/glue_multi_epoch.py --output_dir DIR --stage train --seeds 1      # one worker's share
    python benchmarks/glue_multi_epoch.py --task rte --output_dir /tmp/bench/rte        # RTE (see TASKS)
    python benchmarks/glue_multi_epoch.py --preset short_budget --output_dir /tmp/bench/glue_runs  # see PRESETS

RTE (`--task rte`, sentence pairs) has no labelled test split here: a fixed part of RTE train (seed 0) is the
validation split that chooses everything, the train subset comes from the rest, and the official RTE validation
split is the holdout, read once in the report stage (results/glue_multi_epoch_rte.{md,json}, plots).

`--preset short_budget` is the counter-example: 120 steps, under one epoch of 4,000 sentences, where every
snapshot is still clearly better than the one before (results/glue_schedules.{md,json}; the committed ones were
written by the earlier one-process script, in its own format: accuracy only, no temperature rows, no anchor).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from _common import (
    DATA,
    RESULTS,
    LoadMonitor,
    RunConfig,
    fmt_mean_std,
    machine_info,
    make_schedules,
    markdown_table,
    mean_std,
    plot_per_snapshot,
    plot_traces,
    setup_logging,
    train_run,
    write_results,
)
from _glue_data import Holdout, frame_loader, train_and_validation
from _staged import deep_ensemble as staged_deep_ensemble
from _staged import evaluation, finished_runs, per_snapshot, report_runs, summarize
from hf_sgdr.atomic import atomic_write_json
from hf_sgdr.snapshots import SnapshotEnsemble

logger = logging.getLogger("benchmarks.glue_multi_epoch")

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SCHEDULES = ("cosine", "sgdr_tmult1", "star", "fge", "cosine_with_restarts", "sgdr_tmult2", "linear")
STOCK = ("linear", "cosine", "cosine_with_restarts")
METRICS = ("accuracy", "nll", "brier", "ece")
#: Version of the holdout report files: a re-run recomputes older ones from the kept snapshots.
REPORT_VERSION = 1
QUICK = {
    "epochs": 2,
    "seeds": [0, 1],
    "train_samples": 32,
    "batch_size": 8,
    "warmup_steps": 0,
    "num_cycles": 4,
    "schedules": ["cosine", "star"],
    "validation_samples": 32,
    "holdout_samples": 32,
    "eval_batch_size": 32,
}
#: Per task: its name, text columns and the defaults that differ from SST-2's (a flag given wins).
TASKS: dict[str, dict[str, Any]] = {
    "sst2": {"name": "SST-2", "columns": ("sentence",), "defaults": {}, "quick": {}},
    # RTE: no labelled test split here, so a fixed part of RTE train (shuffled with seed 0; --validation_samples
    # pairs) is the validation split that chooses everything, the train subset is drawn from the rest, and the
    # official RTE validation split (277 pairs) is the holdout, read once in the report stage.
    "rte": {
        "name": "RTE",
        "columns": ("sentence1", "sentence2"),
        "defaults": {
            "train_samples": 400,
            "epochs": 4,
            "num_cycles": 4,
            "max_length": 128,
            "validation_samples": 300,
            "eval_batch_size": 64,
            "train_sampling_strategy": "group_by_length",
            "schedules": ["cosine", "cosine_with_restarts", "star"],  # what ran (sgdr_tmult1 did not fit)
            "holdout_file": DATA / "glue" / "rte" / "validation.parquet",
        },
        "quick": {"max_length": 48, "num_cycles": 3, "validation_samples": 16, "holdout_samples": 16},
    },
}
#: Per preset: its title, results name and the defaults that differ from the task's (a flag given wins).
PRESETS: dict[str, dict[str, Any]] = {
    "multi_epoch": {
        "title": "several epochs of a small subset: snapshot ensembles where they can pay",
        "results": "glue_multi_epoch",
        "defaults": {},
        "quick": {},
    },
    # The counter-example: under one epoch, every snapshot is still clearly better than the one before.
    "short_budget": {
        "title": "under one epoch: the counter-example",
        "results": "glue_schedules",
        "defaults": {
            "steps": 120,
            "train_samples": 4000,
            "num_cycles": 4,
            "schedules": ["linear", "cosine", "cosine_with_restarts", "sgdr_tmult1", "sgdr_tmult2"],
        },
        "quick": {"steps": 8, "train_samples": 96, "num_cycles": 3, "schedules": ["cosine", "sgdr_tmult2"]},
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--task",
        choices=list(TASKS),
        default="sst2",
        help="sst2, or rte (sentence pairs; validation = a fixed part of RTE train, holdout = RTE validation; "
        "its own defaults: see TASKS)",
    )
    parser.add_argument(
        "--preset", choices=list(PRESETS), default="multi_epoch", help="the budget and schedules (see PRESETS)"
    )
    parser.add_argument("--epochs", type=int, default=5, help="passes over the subset (sets the optimizer steps)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: from --epochs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train_samples", type=int, default=1000, help="train subset (shuffled, seed 0)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="peak lr of every schedule")
    parser.add_argument("--warmup_steps", type=int, default=6, help="linear warmup of every schedule")
    parser.add_argument("--num_cycles", type=int, default=5, help="cycles / snapshots per run")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=SCHEDULES)
    parser.add_argument(
        "--validation_samples", type=int, default=None, help="default: all 872 (for RTE: the part of train)"
    )
    parser.add_argument("--holdout_samples", type=int, default=None, help="default: all")
    parser.add_argument("--eval_batch_size", type=int, default=128)
    parser.add_argument("--holdout_file", type=Path, default=DATA / "holdout" / "sst2_test_labeled.parquet")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument(
        "--train_sampling_strategy",
        choices=("random", "group_by_length"),
        default="random",
        help="the Trainer's train sampler (group_by_length: less padding for texts of very different lengths)",
    )
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(**{**TASKS[known.task]["defaults"], **PRESETS[known.preset]["defaults"]})
    parser.add_argument("--output_dir", type=Path, required=True, help="run folders (kept: the stages resume)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS)
    parser.add_argument("--stage", choices=("train", "report", "all"), default="all")
    parser.add_argument("--partial", action="store_true", help="report without the runs not trained (named)")
    parser.add_argument("--quick", action="store_true", help="smoke run (2 schedules, 2 seeds, 8 steps)")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update({**QUICK, **TASKS[args.task]["quick"], **PRESETS[args.preset]["quick"]})
    args.steps = args.steps or math.ceil(args.train_samples / args.batch_size) * args.epochs
    return args


def run_folder(args: argparse.Namespace, schedule: str, seed: int) -> Path:
    return args.output_dir / f"{schedule}-seed{seed}"


def results_name(args: argparse.Namespace) -> str:
    name = PRESETS[args.preset]["results"] + ("" if args.task == "sst2" else f"_{args.task}")
    return f"{name}_quick" if args.quick else name


# ---------------------------------------------------------------------------------------------- model
def model_and_config(args: argparse.Namespace) -> tuple[Callable[[], torch.nn.Module], RunConfig]:
    """A maker of fresh MiniLM 2-label classifiers and the `RunConfig` that every run shares."""
    from transformers import AutoModelForSequenceClassification

    def make_model() -> torch.nn.Module:
        return AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)

    config = RunConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        num_cycles=args.num_cycles,
        logging_steps=max(1, args.steps // 60),
        task=args.task,
        train_sampling_strategy=args.train_sampling_strategy,
    )
    return make_model, config


def warm_up(make_model: Callable[[], torch.nn.Module], train: Any, collator: Any, batch_size: int) -> None:
    """A few untimed steps so that the first timed run does not pay the process's first allocations."""
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    rows = [{k: train[i][k] for k in ("input_ids", "attention_mask", "label")} for i in range(batch_size)]
    for _ in range(3):
        model(**collator(rows)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


# ---------------------------------------------------------------------------------------------- stage 1
def train_stage(args: argparse.Namespace, tokenizer: Any, load: LoadMonitor) -> None:
    """Train every (seed, schedule) not trained yet; evaluate it on validation; write RUN/run.json."""
    from transformers import DataCollatorWithPadding

    train, validation_loader = train_and_validation(args, tokenizer)
    make_model, config = model_and_config(args)
    schedules = make_schedules(args.schedules, args.num_cycles)
    jobs = [(s, schedule) for s in args.seeds for schedule in schedules]
    todo = [(s, schedule) for s, schedule in jobs if not (run_folder(args, schedule.name, s) / "run.json").is_file()]
    logger.info("train stage: %d of %d runs to do", len(todo), len(jobs))
    if todo:
        warm_up(make_model, train, DataCollatorWithPadding(tokenizer), args.batch_size)
    for seed, schedule in tqdm(todo, desc="train + validation", unit="run"):
        folder = run_folder(args, schedule.name, seed)
        out = train_run(schedule, make_model, train, config, seed, folder, tokenizer=tokenizer)
        load.sample()
        tick = time.perf_counter()
        ensemble = SnapshotEnsemble.from_pretrained(out.snapshot_dir, progress=False, device="cpu")
        report = ensemble.evaluate(validation_loader, metrics=list(METRICS), eval_split="validation")
        run = {
            "schedule": schedule.name,
            "seed": seed,
            "train_wall_s": out.train_wall_s,
            "validation_eval_wall_s": time.perf_counter() - tick,
            "snapshot_dir": str(out.snapshot_dir),
            "snapshot_steps": out.snapshot_steps,
            "lr": out.lr,
            "loss": out.loss,
            "validation": report.to_dict(),
            "finished_at": time.time(),
        }
        atomic_write_json(folder / "run.json", run)
        logger.info(
            "%s seed %d: %.0f s; validation final acc %.4f nll %.4f, ensemble(all) acc %.4f nll %.4f",
            schedule.name,
            seed,
            out.train_wall_s,
            report.rows_of("snapshot")[-1].metrics["accuracy"],
            report.rows_of("snapshot")[-1].metrics["nll"],
            report.rows_of("ensemble")[-1].metrics["accuracy"],
            report.rows_of("ensemble")[-1].metrics["nll"],
        )


# ---------------------------------------------------------------------------------------------- stage 2
def report_stage(args: argparse.Namespace, tokenizer: Any, load: LoadMonitor, started: float) -> dict[str, Any]:
    """Read the holdout (only now, once every run is trained) and evaluate every run on it."""

    def load_run(name: str, seed: int) -> dict[str, Any] | None:
        path = run_folder(args, name, seed) / "run.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    runs, missing = finished_runs(args.seeds, args.schedules, load_run, args.partial)
    training_finished_at = max(run["finished_at"] for run in runs)
    _, validation_loader = train_and_validation(args, tokenizer)
    holdout = Holdout(args.holdout_file)
    frame = holdout.read("final_report", training_finished_at)
    if args.holdout_samples:
        frame = frame.iloc[: args.holdout_samples]
    holdout_loader = frame_loader(args.task, tokenizer, frame, args.max_length, args.eval_batch_size)
    report_runs(
        runs,
        lambda run: run_folder(args, run["schedule"], run["seed"]),
        "holdout",
        REPORT_VERSION,
        evaluation(holdout_loader, validation_loader, METRICS, "holdout_test"),
        load.sample,
    )
    anchor = deep_ensemble(args, runs, tokenizer, holdout_loader, validation_loader)
    payload = {
        "benchmark": "glue_multi_epoch",
        "task": args.task,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": MODEL_ID,
        "machine": machine_info(),
        "load_average": load.summary(),
        "training_finished_at": training_finished_at,
        "holdout": {"path": str(args.holdout_file), "stage": holdout.stage, "read_at": holdout.read_at},
        "num_holdout": len(frame),
        "total_wall_s": time.time() - started,
        "runs": runs,
        "missing_runs": missing,
        "deep_ensemble": anchor,
    }
    present = [name for name in args.schedules if any(run["schedule"] == name for run in runs)]
    payload["summary"] = summarize(
        runs, present, anchor, split="holdout", metrics=METRICS, tempered_ensemble="temperature-scaled"
    )
    payload["goal"] = goal_check(payload["summary"])
    return payload


def deep_ensemble(
    args: argparse.Namespace, runs: list[dict[str, Any]], tokenizer: Any, holdout_loader: Any, validation_loader: Any
) -> dict[str, Any] | None:
    """The seeds' final cosine models as one ensemble (K independent runs: K times the training compute)."""
    from transformers import AutoModelForSequenceClassification

    return staged_deep_ensemble(
        runs,
        args.output_dir / "deep_ensemble_cosine.json",
        REPORT_VERSION,
        lambda: SnapshotEnsemble(tokenizer=tokenizer, task=args.task, progress=False),
        AutoModelForSequenceClassification.from_pretrained,
        evaluation(holdout_loader, validation_loader, METRICS, "holdout_test", soups=False),
    )


# ---------------------------------------------------------------------------------------------- summary
def goal_check(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goal, measured. Our row: the SGDR snapshot ensemble (all / last 3, any SGDR schedule) with the
    best validation NLL, never chosen on the holdout. Their row: the best stock row of any kind by holdout NLL
    (a choice that favours the stock side). Plus the share of the deep-ensemble anchor's NLL gain."""

    def mean(entry: dict[str, Any], split: str, metric: str) -> float:
        return mean_std(entry[split][metric])[0]

    ours_candidates = [
        e
        for e in summary
        if e["schedule"] not in (*STOCK, "anchor") and e["row"] in ("ensemble, all", "ensemble, last 3")
    ]
    stock = [e for e in summary if e["schedule"] in STOCK]
    if not ours_candidates or not stock:
        return {}
    ours = min(ours_candidates, key=lambda e: mean(e, "validation", "nll"))
    theirs = min(stock, key=lambda e: mean(e, "holdout", "nll"))
    result: dict[str, Any] = {
        "sgdr_row": f"{ours['schedule']}: {ours['row']}",
        "stock_row": f"{theirs['schedule']}: {theirs['row']}",
        "sgdr_nll": mean(ours, "holdout", "nll"),
        "stock_nll": mean(theirs, "holdout", "nll"),
        "sgdr_accuracy": mean(ours, "holdout", "accuracy"),
        "stock_accuracy": mean(theirs, "holdout", "accuracy"),
        "best_stock_accuracy": max(mean(e, "holdout", "accuracy") for e in stock),
    }
    result["relative_nll_gain"] = 1 - result["sgdr_nll"] / result["stock_nll"]
    result["accuracy_points"] = 100 * (result["sgdr_accuracy"] - result["best_stock_accuracy"])
    anchor = [e for e in summary if e["schedule"] == "anchor" and "temperature" not in e["row"]]
    cosine_final = [e for e in summary if e["schedule"] == "cosine" and e["row"] == "final model"]
    result["share_of_deep_ensemble_gain"] = None
    if anchor and cosine_final:
        base = mean(cosine_final[0], "holdout", "nll")
        result["deep_ensemble_nll"] = mean(anchor[0], "holdout", "nll")
        anchor_gain = base - result["deep_ensemble_nll"]
        if anchor_gain > 0:
            result["share_of_deep_ensemble_gain"] = (base - result["sgdr_nll"]) / anchor_gain
    result["met"] = bool(
        result["relative_nll_gain"] >= 0.15
        and result["accuracy_points"] >= 1.0
        and (result["share_of_deep_ensemble_gain"] or 0) >= 2 / 3
    )
    return result


# ---------------------------------------------------------------------------------------------- report
#: The rows of the short table: what a user gets without, and with, the snapshots.
KEY_ROWS = ("final model", "best snapshot (validation NLL)", "ensemble, all", "greedy selection (validation NLL)")


def render(payload: dict[str, Any]) -> str:
    config = payload["config"]
    header = [
        "schedule",
        "model",
        "holdout acc. %",
        "holdout NLL",
        "holdout ECE",
        "holdout Brier",
        "val. NLL",
        "disagr.",
        "seeds",
    ]
    body, key_body = [], []
    for entry in payload["summary"]:
        holdout = entry["holdout"]
        validation = entry.get("validation")
        rates = [r for r in entry["disagreement"] if r is not None]
        body.append(
            [
                entry["schedule"],
                entry["row"],
                fmt_mean_std(holdout["accuracy"], 100),
                fmt_mean_std(holdout["nll"], digits=3),
                fmt_mean_std(holdout["ece"], digits=3),
                fmt_mean_std(holdout["brier"], digits=3),
                fmt_mean_std(validation["nll"], digits=3) if validation else "(chosen on it)",
                f"{100 * mean_std(rates)[0]:.1f} %" if rates else "",
                entry["seeds"],
            ]
        )
        if entry["row"] in KEY_ROWS or entry["schedule"] == "anchor":
            key_body.append(body[-1])
    goal = payload.get("goal") or {}
    goal_lines = []
    if goal:
        goal_lines = [
            "## The goal, measured (holdout, mean over seeds)",
            "",
            f"- SGDR snapshot ensemble with the best validation NLL: **{goal['sgdr_row']}**: holdout NLL "
            f"{goal['sgdr_nll']:.4f}, accuracy {100 * goal['sgdr_accuracy']:.2f} %",
            f"- best stock row of any kind by holdout NLL (a choice in the stock side's favour): "
            f"**{goal['stock_row']}**: NLL {goal['stock_nll']:.4f}, accuracy {100 * goal['stock_accuracy']:.2f} %; "
            f"best stock accuracy of any row {100 * goal['best_stock_accuracy']:.2f} %",
            f"- relative NLL gain {100 * goal['relative_nll_gain']:.1f} % (goal >= 15 %), accuracy "
            f"{goal['accuracy_points']:+.2f} points over the best stock accuracy (goal >= +1.0)",
        ]
        if goal.get("share_of_deep_ensemble_gain") is not None:
            goal_lines.append(
                f"- deep ensemble of the cosine seeds: NLL {goal['deep_ensemble_nll']:.4f}; the SGDR row reaches "
                f"{100 * goal['share_of_deep_ensemble_gain']:.0f} % of its NLL gain over the cosine final model "
                f"(goal >= 67 %) at 1/{len(payload['deep_ensemble']['seeds'])} of its compute"
            )
        goal_lines += [f"- goal met: **{'yes' if goal['met'] else 'no'}**", ""]
    timing = []
    for schedule in config["schedules"]:
        group = [run for run in payload["runs"] if run["schedule"] == schedule]
        if not group:
            continue
        timing.append(
            [
                schedule,
                ", ".join(map(str, group[0]["snapshot_steps"])),
                fmt_mean_std([run["train_wall_s"] for run in group], digits=0),
                fmt_mean_std([run["holdout_eval_wall_s"] for run in group], digits=0),
            ]
        )
    machine, load = payload["machine"], payload["load_average"]
    task = config.get("task", "sst2")
    return "\n".join(
        [
            f"# {TASKS[task]['name']}, {PRESETS[config.get('preset', 'multi_epoch')]['title']}",
            "",
            f"`{payload['model']}`, {_data_text(payload)}. Peak lr "
            f"{config['learning_rate']}, warmup {config['warmup_steps']} steps, max_length {config['max_length']}, "
            f"{config['num_cycles']} cycles / snapshots, seeds {config['seeds']}, train sampler "
            f"{config.get('train_sampling_strategy', 'random')}. Mean ± std over seeds; "
            "ECE with 15 equal-width bins; Brier in its two-class (positive-class) form; disagreement: members' "
            "pairwise argmax disagreement on the holdout.",
            "",
            "Key rows (all rows below):",
            "",
            markdown_table(header, key_body),
            "",
            "All rows:",
            "",
            markdown_table(header, body),
            "",
            *(
                [f"Not trained in time, left out: {', '.join(payload['missing_runs'])}.", ""]
                if payload["missing_runs"]
                else []
            ),
            *goal_lines,
            "## Snapshot steps and wall time per run (seconds, mean ± std over seeds)",
            "",
            markdown_table(["schedule", "snapshot steps", "train()", "holdout evaluation (all rows)"], timing),
            "",
            f"Machine: {machine['cpus']} CPU cores, torch {machine['torch']} ({machine['torch_threads']} thread(s)), "
            f"transformers {machine['transformers']}; 1-minute load average {load['min']:.1f}–{load['max']:.1f}. "
            f"Report stage {payload['total_wall_s'] / 60:.1f} min.",
        ]
    )


def _data_text(payload: dict[str, Any]) -> str:
    """What was trained on, what chose, what was reported on (the render's first paragraph)."""
    config = payload["config"]
    epochs = config["steps"] / math.ceil(config["train_samples"] / config["batch_size"])
    steps = f"({config['steps']} optimizer steps of batch {config['batch_size']})"
    chosen = (
        "everything chosen (best snapshot, greedy soup and selection, temperatures) is chosen on the validation "
        "split by NLL"
    )
    if config.get("task", "sst2") == "sst2":
        return (
            f"{epochs:.3g} epochs of {config['train_samples']} SST-2 train sentences {steps}. Holdout: "
            f"{payload['num_holdout']} labelled SST-2 test sentences, read once, after every run was trained; "
            f"{chosen} (the 872 validation sentences)"
        )
    return (
        f"{epochs:.3g} epochs of {config['train_samples']} RTE train sentence pairs {steps}. Validation: "
        f"{config['validation_samples']} other pairs of RTE train (RTE train shuffled once with seed 0: the first "
        f"pairs validate, the next ones train); {chosen}. Holdout: {payload['num_holdout']} pairs of the official "
        "RTE validation split (RTE has no labelled test split here), read once, after every run was trained"
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    started, load = time.time(), LoadMonitor()
    tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
    if args.stage in ("train", "all"):
        train_stage(args, tokenizer, load)
    if args.stage == "train":
        return None
    payload = report_stage(args, tokenizer, load, started)
    name = results_name(args)
    title = f"{TASKS[args.task]['name']}, {args.steps} steps"
    runs_for_plots = [{**run, "validation": per_snapshot(run)} for run in payload["runs"]]
    payload["plots"] = [
        str(plot_traces(payload["runs"], args.results_dir / f"{name}_lr_loss.png", title)),
        str(
            plot_per_snapshot(
                runs_for_plots, args.results_dir / f"{name}_nll_per_snapshot.png", "nll", "validation", "NLL", False
            )
        ),
    ]
    markdown = render(payload)
    write_results(name, payload, markdown, args.results_dir)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
