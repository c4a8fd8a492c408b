"""SST-2 fine-tuning of all-MiniLM-L6-v2 with five lr schedules at the same budget, seeds repeated.

Schedules: transformers `linear`, `cosine`, `cosine_with_restarts` (num_cycles cycles) and SGDR
(`lr_scheduler_type="sgdr"`, T_mult 1 and 2, cycles fitted to the budget), all with the same optimizer
steps, batch size, peak lr, warmup and seeds, through the real `Trainer` (`SGDRTrainer` for SGDR, whose
`SGDRCallback` writes a snapshot at every cycle end). The stock schedules are snapshotted too, at
num_cycles equal intervals after the warmup (the cycle ends of `cosine_with_restarts`), so that every row
has a final model, a snapshot ensemble (last 3, all) and a uniform soup, evaluated by `SnapshotEnsemble`.

Stages: (1) train every (schedule, seed) and evaluate it on SST-2 validation; (2) final report: only then
is the labelled SST-2 test holdout read, and every run is evaluated on it (with `--greedy`, the greedy soup
and greedy ensemble selection are chosen on validation and reported on the holdout). No hyper-parameter is
tuned here: they are fixed before the run.

    eval "$(python ../shared/hf-offline/build_cache.py /tmp/hfhome)"
    python benchmarks/glue_schedules.py            # default scale (see --help); --quick for a smoke run
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from _common import (
    DATA,
    RESULTS,
    LoadMonitor,
    RunConfig,
    conditions_text,
    evaluate_snapshots,
    fmt_mean_std,
    machine_info,
    make_schedules,
    markdown_table,
    plot_per_snapshot,
    plot_traces,
    setup_logging,
    summarize_over_seeds,
    train_run,
    wall_time_rows,
    write_results,
)

logger = logging.getLogger("benchmarks.glue")

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "sgdr_tmult1", "sgdr_tmult2")
QUICK = {
    "steps": 6,
    "seeds": [0],
    "train_samples": 48,
    "batch_size": 8,
    "warmup_steps": 0,
    "num_cycles": 3,
    "schedules": ["cosine", "sgdr_tmult2"],
}
QUICK_EVAL = {"validation_samples": 48, "holdout_samples": 48, "eval_batch_size": 48}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps per run (every schedule)")
    add_sst2_run_arguments(parser, train_samples=4000, num_cycles=4, schedules=SCHEDULES)
    parser.add_argument("--greedy", action="store_true", help="also greedy soup / selection, chosen on validation")
    parser.add_argument("--output_dir", type=Path, default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS)
    parser.add_argument("--keep_snapshots", action="store_true", help="keep the snapshot folders after the report")
    parser.add_argument("--quick", action="store_true", help="smoke run (cosine, SGDR T_mult 2; 6 steps; --greedy)")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK, **QUICK_EVAL, greedy=True)
    return args


def add_sst2_run_arguments(
    parser: argparse.ArgumentParser, *, train_samples: int, num_cycles: int, schedules: Sequence[str]
) -> None:
    """The flags every SST-2 benchmark shares: data, model, schedule, evaluation and machine settings."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--train_samples", type=int, default=train_samples, help="SST-2 train subset (shuffled, seed 0)"
    )
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="peak lr of every schedule")
    parser.add_argument("--warmup_steps", type=int, default=6, help="linear warmup of every schedule")
    parser.add_argument("--num_cycles", type=int, default=num_cycles, help="cycles / snapshots per run")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--schedules", nargs="+", default=list(schedules), choices=schedules)
    parser.add_argument(
        "--validation_samples", type=int, default=None, help="default: all 872 (for RTE: the part of train)"
    )
    parser.add_argument("--holdout_samples", type=int, default=None, help="default: all 1821")
    parser.add_argument("--eval_batch_size", type=int, default=128)
    parser.add_argument("--holdout_file", type=Path, default=DATA / "holdout" / "sst2_test_labeled.parquet")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument(
        "--train_sampling_strategy",
        choices=("random", "group_by_length"),
        default="random",
        help="the Trainer's train sampler (group_by_length: less padding for texts of very different lengths)",
    )


# ---------------------------------------------------------------------------------------------- data
def sorted_loader(
    tokenizer: Any,
    texts: list[str],
    labels: list[int],
    max_length: int,
    batch_size: int,
    text_pairs: list[str] | None = None,
) -> Any:
    """An evaluation dataloader with the examples (or sentence pairs) sorted by length (less padding; metrics
    are order-free)."""
    from hf_sgdr.data import text_dataloader

    encoded = tokenizer(texts, text_pairs, truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    return text_dataloader(
        tokenizer,
        [texts[i] for i in order],
        None if text_pairs is None else [text_pairs[i] for i in order],
        labels=[labels[i] for i in order],
        max_length=max_length,
        batch_size=batch_size,
    )


def load_train_and_validation(args: argparse.Namespace, tokenizer: Any) -> tuple[Any, Any]:
    """The tokenised train subset (Trainer dataset) and the validation dataloader (from the Hub ids, offline)."""
    from datasets import load_dataset

    glue = load_dataset("nyu-mll/glue", "sst2")
    train = glue["train"].shuffle(seed=0).select(range(args.train_samples))
    train = train.map(
        lambda b: tokenizer(b["sentence"], truncation=True, max_length=args.max_length),
        batched=True,
        remove_columns=["sentence", "idx"],
    )
    validation = glue["validation"]
    if args.validation_samples:
        validation = validation.select(range(args.validation_samples))
    loader = sorted_loader(
        tokenizer, list(validation["sentence"]), list(validation["label"]), args.max_length, args.eval_batch_size
    )
    return train, loader


class Holdout:
    """The labelled SST-2 test set, readable once and only in the final-report stage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read_at: float | None = None
        self.stage: str | None = None

    def read(self, stage: str, training_finished_at: float | None) -> Any:
        if stage != "final_report" or training_finished_at is None:
            raise RuntimeError("the holdout is read only in the final-report stage, after every training run")
        import pandas as pd

        self.read_at, self.stage = time.time(), stage
        logger.info("final report: reading the holdout %s", self.path)
        return pd.read_parquet(self.path)


# ---------------------------------------------------------------------------------------------- runs
def sst2_model_and_config(args: argparse.Namespace, logs_per_run: int) -> tuple[Any, RunConfig]:
    """A maker of fresh MiniLM 2-label classifiers and the `RunConfig` that every run of an SST-2 benchmark shares
    (or of another 2-label GLUE task: `args.task`, default sst2)."""
    from transformers import AutoModelForSequenceClassification

    def make_model() -> torch.nn.Module:
        return AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)

    config = RunConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        num_cycles=args.num_cycles,
        logging_steps=max(1, args.steps // logs_per_run),
        task=getattr(args, "task", "sst2"),
        train_sampling_strategy=args.train_sampling_strategy,
    )
    return make_model, config


def warm_up(make_model: Any, train: Any, collator: Any, batch_size: int) -> None:
    """A few untimed steps so that the first timed run does not pay the process's first allocations."""
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    rows = [{k: train[i][k] for k in ("input_ids", "attention_mask", "label")} for i in range(batch_size)]
    for _ in range(3):
        model(**collator(rows)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer, DataCollatorWithPadding

    started, load = time.time(), LoadMonitor()
    tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
    collator = DataCollatorWithPadding(tokenizer)
    train, validation_loader = load_train_and_validation(args, tokenizer)

    make_model, config = sst2_model_and_config(args, logs_per_run=40)
    schedules = make_schedules(args.schedules, args.num_cycles)
    work = Path(args.output_dir or tempfile.mkdtemp(prefix="hf_sgdr_glue_bench_"))
    warm_up(make_model, train, collator, args.batch_size)

    # Stage 1: training and validation (seeds outermost, so the machine's load falls on every schedule alike).
    runs: list[dict[str, Any]] = []
    jobs = [(seed, schedule) for seed in args.seeds for schedule in schedules]
    for seed, schedule in tqdm(jobs, desc="train + validation", unit="run"):
        folder = work / f"{schedule.name}-seed{seed}"
        out = train_run(schedule, make_model, train, config, seed, folder, tokenizer=tokenizer)
        load.sample()
        tick = time.perf_counter()
        validation = evaluate_snapshots(
            out.snapshot_dir, validation_loader, metrics=["accuracy"], eval_split="validation"
        )
        runs.append(
            {
                "schedule": schedule.name,
                "seed": seed,
                "train_wall_s": out.train_wall_s,
                "validation_eval_wall_s": time.perf_counter() - tick,
                "snapshot_dir": out.snapshot_dir,
                "snapshot_steps": out.snapshot_steps,
                "lr": out.lr,
                "loss": out.loss,
                "validation": validation,
                "finished_at": time.time(),
            }
        )
        logger.info(
            "%s seed %d: %.0f s, validation accuracy final %.4f, ensemble(all) %.4f",
            schedule.name,
            seed,
            out.train_wall_s,
            validation["final"]["accuracy"],
            validation["ensemble_all"]["accuracy"],
        )
    training_finished_at = max(run["finished_at"] for run in runs)

    # Stage 2: final report on the holdout (selection, if any, on validation only).
    holdout = Holdout(args.holdout_file)
    frame = holdout.read("final_report", training_finished_at)
    if args.holdout_samples:
        frame = frame.iloc[: args.holdout_samples]
    holdout_loader = sorted_loader(
        tokenizer, frame["sentence"].tolist(), frame["label"].tolist(), args.max_length, args.eval_batch_size
    )
    for run in tqdm(runs, desc="final report (holdout)", unit="run"):
        tick = time.perf_counter()
        run["holdout"] = evaluate_snapshots(
            run["snapshot_dir"],
            holdout_loader,
            validation_loader if args.greedy else None,
            metrics=["accuracy"],
            eval_split="holdout_test",
            selection_split="validation",
        )
        run["holdout_eval_wall_s"] = time.perf_counter() - tick
        load.sample()
        if not args.keep_snapshots:
            shutil.rmtree(run["snapshot_dir"], ignore_errors=True)
    if args.output_dir is None and not args.keep_snapshots:
        shutil.rmtree(work, ignore_errors=True)

    payload = {
        "benchmark": "glue_schedules",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": MODEL_ID,
        "stock_snapshots": "equal intervals after the warmup (the cycle ends of cosine_with_restarts)",
        "machine": machine_info(),
        "load_average": load.summary(),
        "training_finished_at": training_finished_at,
        "holdout": {
            "path": str(args.holdout_file),
            "stage": holdout.stage,
            "read_at": holdout.read_at,
            "num_examples": len(frame),
        },
        "num_validation": sum(len(b["labels"]) for b in validation_loader),
        "total_wall_s": time.time() - started,
        "runs": runs,
    }
    payload["summary"] = summarize_over_seeds(
        runs, args.schedules, ("validation", "holdout"), "accuracy", required_split="holdout"
    )
    name = "glue_schedules_quick" if args.quick else "glue_schedules"
    payload["plots"] = [
        str(plot_traces(runs, args.results_dir / f"{name}_lr_loss.png", f"SST-2, MiniLM, {args.steps} steps")),
        str(
            plot_per_snapshot(
                runs, args.results_dir / f"{name}_accuracy_per_snapshot.png", "accuracy", "validation", "accuracy"
            )
        ),
    ]
    markdown = render(payload)
    write_results(name, payload, markdown, args.results_dir)
    print(markdown)
    return payload


# ---------------------------------------------------------------------------------------------- report
def render(payload: dict[str, Any]) -> str:
    config, runs = payload["config"], payload["runs"]
    header = ["schedule", "model", "validation acc. % (mean ± std)", "holdout test acc. % (mean ± std)", "seeds"]
    body = []
    for entry in payload["summary"]:
        cells = []
        for split in ("validation", "holdout"):
            values = entry.get(split, {}).get("values")
            cells.append(fmt_mean_std(values, 100) if values else "(chosen on it)")
        body.append([entry["schedule"], entry["label"], *cells, entry["seeds"]])
    wall_keys = ("train_wall_s", "validation_eval_wall_s", "holdout_eval_wall_s")
    timing = wall_time_rows(runs, config["schedules"], wall_keys)
    return "\n".join(
        [
            "# SST-2 fine-tuning: lr schedules, snapshot ensembles and soups",
            "",
            f"`{payload['model']}`, {config['steps']} optimizer steps of batch {config['batch_size']} "
            f"(train subset {config['train_samples']}), peak lr {config['learning_rate']}, warmup "
            f"{config['warmup_steps']} steps, max_length {config['max_length']}, {config['num_cycles']} cycles / "
            f"snapshots, seeds {config['seeds']}. Validation: {payload['num_validation']} sentences; holdout test: "
            f"{payload['holdout']['num_examples']} sentences, read only in the final-report stage. Stock schedules: "
            f"snapshots at {payload['stock_snapshots']}.",
            "",
            markdown_table(header, body),
            "",
            "## Wall time per run (seconds, mean ± std over seeds)",
            "",
            markdown_table(
                ["schedule", "snapshot steps", "train()", "validation eval (all rows)", "holdout eval (all rows)"],
                timing,
            ),
            "",
            conditions_text(payload["machine"], payload["load_average"], payload["total_wall_s"]),
        ]
    )


if __name__ == "__main__":
    main()
