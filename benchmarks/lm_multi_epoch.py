"""A small character-level GPT-2, trained from scratch for many epochs over a small subset of Tiny Shakespeare:
the regime where a cycle converges and the final model overfits (validation NLL bottoms out and rises within the
budget), so that snapshots are of similar quality, the regime snapshot ensembles are for. Scored in NLL per
character and perplexity.

Data: the splits of `_lm_data.py` (contiguous parts of `tinyshakespeare.txt`: train 0-90 %, validation
90-95 %, test 95-100 %); training uses only the first `--train_chars` characters of the train part, cut into
non-overlapping blocks, for `--epochs` passes. Rows, all at the same training compute (same optimizer steps,
batch, peak lr, warmup, seeds): transformers `cosine` and `cosine_with_restarts` (snapshotted at equal
intervals), SGDR T_mult 1 and 2, and `star` (one long cycle, then short cycles at half its peak, each from the
first cycle's end). For each: the final model, the best snapshot chosen on validation NLL, ensembles of all /
last 3, the uniform and greedy soups, greedy ensemble selection; plus the deep-ensemble anchor: the seeds' final
cosine models averaged (3x the compute). A validation-NLL curve (the first `--curve_blocks` validation blocks,
every `--curve_every` steps) shows where each run overfits.

Stages, each resumable (a finished run writes its results at once; a re-run skips it):
  train    every (seed, schedule): train, keep the snapshots, evaluate on validation  -> RUN/run.json
  report   only once every run is trained (or with --partial): encode the test part of the file (only now)
           and evaluate every run on it, everything chosen on validation             -> RUN/test.json
           then the deep-ensemble anchor and the tables (results/lm_multi_epoch.{md,json}, plots)

    python benchmarks/lm_multi_epoch.py --output_dir /tmp/bench/lm_multi_epoch       # both stages
    python benchmarks/lm_multi_epoch.py --output_dir DIR --stage report --partial    # report what is done
    python benchmarks/lm_multi_epoch.py --preset short_budget --output_dir /tmp/bench/lm_runs  # see PRESETS

`--preset short_budget` is the counter-example: 300 steps over the whole train part (0.6 epoch), where the model
is still improving fast (results/lm_schedules.{md,json}; the committed ones were written by the earlier
one-process script, in its own format: perplexity only, no temperature rows, no anchor).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import TrainerCallback

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
from _lm_data import CharTokenizer, block_loader, blocks, read_part
from _staged import deep_ensemble as staged_deep_ensemble
from _staged import evaluation, finished_runs, per_snapshot, report_runs, summarize
from hf_sgdr.atomic import atomic_write_json
from hf_sgdr.snapshots import SnapshotEnsemble

logger = logging.getLogger("benchmarks.lm_multi_epoch")

#: The first three are trained for every seed before the others (what a partial report has first).
SCHEDULES = ("cosine", "cosine_with_restarts", "sgdr_tmult1", "sgdr_tmult2", "star", "fge", "linear")
CORE = ("cosine", "cosine_with_restarts", "sgdr_tmult1")
STOCK = ("linear", "cosine", "cosine_with_restarts")
METRICS = ("nll", "perplexity")
#: Per preset: its title, results name and the defaults that differ (a flag given wins).
PRESETS: dict[str, dict[str, Any]] = {
    "multi_epoch": {
        "title": "over many epochs of a small subset",
        "results": "lm_multi_epoch",
        "defaults": {},
        "quick": {},
    },
    # The counter-example: under one epoch of the whole train part, the model is still improving fast.
    "short_budget": {
        "title": "under one epoch: the counter-example",
        "results": "lm_schedules",
        "defaults": {
            "train_chars": None,
            "steps": 300,
            "num_cycles": 4,
            "schedules": ["cosine", "sgdr_tmult1", "sgdr_tmult2"],
        },
        "quick": {"train_chars": 8192, "steps": 12, "num_cycles": 3, "schedules": ["cosine", "sgdr_tmult2"]},
    },
}
QUICK = {
    "train_chars": 4096,
    "epochs": 2,
    "seeds": [0, 1],
    "batch_size": 8,
    "block_size": 64,
    "warmup_steps": 0,
    "num_cycles": 4,
    "schedules": ["cosine", "sgdr_tmult1"],
    "eval_blocks": 16,
    "curve_every": 4,
    "curve_blocks": 8,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--preset", choices=list(PRESETS), default="multi_epoch", help="the budget and schedules (see PRESETS)"
    )
    parser.add_argument("--text_file", type=Path, default=DATA / "lm" / "tinyshakespeare.txt")
    parser.add_argument("--train_chars", type=int, default=100_000, help="first characters of the train part used")
    parser.add_argument("--epochs", type=int, default=24, help="passes over the subset (sets the optimizer steps)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: from --epochs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=3e-3, help="peak lr of every schedule")
    parser.add_argument("--warmup_steps", type=int, default=20)
    parser.add_argument("--num_cycles", type=int, default=5, help="cycles / snapshots per run")
    parser.add_argument("--n_layer", type=int, default=2)
    parser.add_argument("--n_embd", type=int, default=128)
    parser.add_argument("--n_head", type=int, default=4)
    parser.add_argument(
        "--schedules", nargs="+", default=["cosine", "cosine_with_restarts", "sgdr_tmult1", "sgdr_tmult2", "star"],
        choices=SCHEDULES,
    )  # fmt: skip
    parser.add_argument("--eval_blocks", type=int, default=None, help="blocks per eval split (default: all)")
    parser.add_argument("--eval_batch_size", type=int, default=32)
    parser.add_argument("--curve_every", type=int, default=50, help="steps between validation-curve points")
    parser.add_argument("--curve_blocks", type=int, default=128, help="validation blocks of the curve")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output_dir", type=Path, required=True, help="run folders (kept: the stages resume)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS)
    parser.add_argument("--stage", choices=("train", "report", "all"), default="all")
    parser.add_argument("--partial", action="store_true", help="report without the runs not trained (named)")
    parser.add_argument("--quick", action="store_true", help="smoke run (2 schedules, 2 seeds, 16 steps)")
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(**PRESETS[known.preset]["defaults"])
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update({**QUICK, **PRESETS[args.preset]["quick"]})
    return args


def set_budget(args: argparse.Namespace, train_text: str) -> None:
    """`args.train_blocks` (of the train part's first `--train_chars` characters, all by default) and, unless
    given, `args.steps` from `--epochs`."""
    args.train_blocks = len(train_text[: args.train_chars]) // args.block_size
    args.steps = args.steps or math.ceil(args.train_blocks / args.batch_size) * args.epochs


#: The settings a finished run must share with the current ones to be reused (a re-run with others stops).
RUN_KEYS = (
    "train_chars", "epochs", "steps", "batch_size", "block_size", "learning_rate", "warmup_steps", "num_cycles",
    "n_layer", "n_embd", "n_head", "eval_blocks", "curve_every", "curve_blocks", "text_file",
)  # fmt: skip


def run_folder(args: argparse.Namespace, schedule: str, seed: int) -> Path:
    return args.output_dir / f"{schedule}-seed{seed}"


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {key: str(getattr(args, key)) if key == "text_file" else getattr(args, key) for key in RUN_KEYS}


def load_run(args: argparse.Namespace, schedule: str, seed: int) -> dict[str, Any] | None:
    """A finished run's results, or None; a run trained with other settings stops the benchmark."""
    path = run_folder(args, schedule, seed) / "run.json"
    if not path.is_file():
        return None
    run = json.loads(path.read_text(encoding="utf-8"))
    if run.get("settings") != run_settings(args):
        raise SystemExit(f"{path} was trained with other settings ({run.get('settings')}); use another --output_dir")
    return run


# ---------------------------------------------------------------------------------------------- model
def gpt2_config(args: argparse.Namespace, vocab_size: int) -> Any:
    """The small character-level GPT-2 (no dropout; `--n_layer/--n_embd/--n_head`)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=args.block_size,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )


class ValidationCurve(TrainerCallback):
    """Every `every` steps (and at the last), the mean NLL per character on fixed validation blocks, with the
    time it took (so that it can be told apart from training time)."""

    def __init__(self, loader: DataLoader, every: int) -> None:
        self.loader, self.every = loader, every
        self.points: list[tuple[int, float]] = []
        self.wall_s = 0.0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = state.global_step
        if step % self.every and step != state.max_steps:
            return
        tick = time.perf_counter()
        model = kwargs["model"]
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self.loader:
                logits = model(input_ids=batch["input_ids"]).logits[:, :-1]
                targets = batch["input_ids"][:, 1:]
                nll = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
                )
                total, count = total + float(nll), count + targets.numel()
        model.train(was_training)
        self.points.append((step, total / count))
        self.wall_s += time.perf_counter() - tick


# ---------------------------------------------------------------------------------------------- stage 1
def train_stage(args: argparse.Namespace, tokenizer: CharTokenizer, train_text: str, validation: str) -> None:
    """Train every (seed, schedule) not trained yet; evaluate it on validation; write RUN/run.json."""
    from transformers import GPT2LMHeadModel

    train = blocks(tokenizer.encode(train_text[: args.train_chars]), args.block_size)
    validation_loader = block_loader(tokenizer, validation, args.block_size, args.eval_batch_size, args.eval_blocks)
    curve_loader = block_loader(tokenizer, validation, args.block_size, args.eval_batch_size, args.curve_blocks)
    model_config = gpt2_config(args, tokenizer.vocab_size)
    config = RunConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        num_cycles=args.num_cycles,
        logging_steps=max(1, args.steps // 100),
        weight_decay=0.01,
        task="tinyshakespeare-char",
    )
    schedules = make_schedules(args.schedules, args.num_cycles)
    # The core schedules for every seed first, then the others: a partial report has whole rows.
    jobs = sorted(
        ((seed, schedule) for seed in args.seeds for schedule in schedules),
        key=lambda job: (job[1].name not in CORE, args.seeds.index(job[0]), args.schedules.index(job[1].name)),
    )
    todo = [(s, schedule) for s, schedule in jobs if load_run(args, schedule.name, s) is None]
    logger.info("train stage: %d of %d runs to do (%d steps each)", len(todo), len(jobs), args.steps)
    for seed, schedule in tqdm(todo, desc="train + validation", unit="run"):
        folder = run_folder(args, schedule.name, seed)
        curve = ValidationCurve(curve_loader, args.curve_every)
        out = train_run(schedule, lambda: GPT2LMHeadModel(model_config), train, config, seed, folder, callbacks=[curve])
        tick = time.perf_counter()
        ensemble = SnapshotEnsemble.from_pretrained(out.snapshot_dir, progress=False, device="cpu")
        report = ensemble.evaluate(validation_loader, metrics=list(METRICS), eval_split="validation")
        run = {
            "schedule": schedule.name,
            "seed": seed,
            "settings": run_settings(args),
            "train_wall_s": out.train_wall_s - curve.wall_s,
            "curve_wall_s": curve.wall_s,
            "validation_eval_wall_s": time.perf_counter() - tick,
            "snapshot_dir": str(out.snapshot_dir),
            "snapshot_steps": out.snapshot_steps,
            "lr": out.lr,
            "loss": out.loss,
            "validation_curve": curve.points,
            "validation": report.to_dict(),
            "finished_at": time.time(),
        }
        atomic_write_json(folder / "run.json", run)
        best_step, best_nll = min(curve.points, key=lambda p: p[1])
        logger.info(
            "%s seed %d: %.0f s; validation curve min %.4f at step %d, end %.4f; final nll %.4f, ensemble(all) %.4f",
            schedule.name,
            seed,
            out.train_wall_s,
            best_nll,
            best_step,
            curve.points[-1][1],
            report.rows_of("snapshot")[-1].metrics["nll"],
            report.rows_of("ensemble")[-1].metrics["nll"],
        )


# ---------------------------------------------------------------------------------------------- stage 2
def report_stage(
    args: argparse.Namespace, tokenizer: CharTokenizer, validation: str, load: LoadMonitor, started: float
) -> dict[str, Any]:
    """Encode the test part (only now, once every run is trained) and evaluate every run on it."""
    runs, missing = finished_runs(
        args.seeds, args.schedules, lambda name, seed: load_run(args, name, seed), args.partial
    )
    training_finished_at = max(run["finished_at"] for run in runs)
    test_read_at = time.time()
    test_text = read_part(args.text_file, "test")
    test_loader = block_loader(tokenizer, test_text, args.block_size, args.eval_batch_size, args.eval_blocks)
    validation_loader = block_loader(tokenizer, validation, args.block_size, args.eval_batch_size, args.eval_blocks)
    report_runs(
        runs,
        lambda run: run_folder(args, run["schedule"], run["seed"]),
        "test",
        REPORT_VERSION,
        evaluation(test_loader, validation_loader, METRICS, "test"),
        load.sample,
    )
    anchor = deep_ensemble(args, runs, test_loader, validation_loader)
    payload = {
        "benchmark": "lm_multi_epoch",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": {"class": "GPT2LMHeadModel", "n_layer": args.n_layer, "n_embd": args.n_embd, "n_head": args.n_head},
        "num_parameters": _num_parameters(args, tokenizer),
        "vocab_size": tokenizer.vocab_size,
        "num_blocks": {
            "train": args.train_blocks,
            "validation": len(validation_loader.dataset),
            "test": len(test_loader.dataset),
            "curve": min(args.curve_blocks, len(validation_loader.dataset)),
        },
        "machine": machine_info(),
        "load_average": load.summary(),
        "training_finished_at": training_finished_at,
        "test": {"stage": "final_report", "read_at": test_read_at},
        "total_wall_s": time.time() - started,
        "runs": runs,
        "missing_runs": missing,
        "deep_ensemble": anchor,
    }
    present = [name for name in args.schedules if any(run["schedule"] == name for run in runs)]
    payload["summary"] = summarize(
        runs, present, anchor, split="test", metrics=METRICS, tempered_ensemble="members temperature-scaled"
    )
    payload["regime"] = regime(runs, present)
    return payload


#: Version of the test-part report files: a re-run recomputes older ones (2: temperature-scaled rows added).
REPORT_VERSION = 2


def _num_parameters(args: argparse.Namespace, tokenizer: CharTokenizer) -> int:
    from transformers import GPT2LMHeadModel

    return sum(p.numel() for p in GPT2LMHeadModel(gpt2_config(args, tokenizer.vocab_size)).parameters())


def deep_ensemble(
    args: argparse.Namespace, runs: list[dict[str, Any]], test_loader: DataLoader, validation_loader: DataLoader
) -> dict[str, Any] | None:
    """The seeds' final cosine models as one ensemble (K independent runs: K times the training compute)."""
    from transformers import GPT2LMHeadModel

    seeds = "_".join(str(run["seed"]) for run in runs if run["schedule"] == "cosine")
    return staged_deep_ensemble(
        runs,
        args.output_dir / f"deep_ensemble_cosine_{seeds}.json",
        REPORT_VERSION,
        lambda: SnapshotEnsemble(task="tinyshakespeare-char", progress=False),
        GPT2LMHeadModel.from_pretrained,
        evaluation(test_loader, validation_loader, METRICS, "test", soups=False),
    )


# ---------------------------------------------------------------------------------------------- summary
def regime(runs: list[dict[str, Any]], schedules: list[str]) -> dict[str, Any]:
    """Where each schedule's validation curve bottoms out and how far its end lies above that minimum."""
    out: dict[str, Any] = {}
    for schedule in schedules:
        group = [run for run in runs if run["schedule"] == schedule]
        minima = [min(run["validation_curve"], key=lambda p: p[1]) for run in group]
        out[schedule] = {
            "min_step": [step for step, _ in minima],
            "min_nll": [nll for _, nll in minima],
            "end_nll": [run["validation_curve"][-1][1] for run in group],
            "rise_nll": [run["validation_curve"][-1][1] - nll for run, (_, nll) in zip(group, minima, strict=True)],
            "final_train_loss": [run["loss"][-1][1] for run in group],
        }
    return out


# ---------------------------------------------------------------------------------------------- report
KEY_ROWS = (
    "final model",
    "final model, temperature-scaled",
    "best snapshot (validation NLL)",
    "ensemble, all",
    "ensemble, all, members temperature-scaled",
    "greedy selection (validation NLL)",
)


def render(payload: dict[str, Any]) -> str:
    config = payload["config"]
    header = ["schedule", "model", "test NLL/char", "test ppl", "val. NLL/char", "gain vs mean member (NLL)", "seeds"]
    body, key_body = [], []
    for entry in payload["summary"]:
        test, validation = entry["test"], entry.get("validation")
        gains = [g for g in entry["gain_over_mean_member_nll"] if g is not None]
        body.append(
            [
                entry["schedule"],
                entry["row"],
                fmt_mean_std(test["nll"], digits=4),
                fmt_mean_std(test["perplexity"], digits=3),
                fmt_mean_std(validation["nll"], digits=4) if validation else "(chosen on it)",
                f"{mean_std(gains)[0]:+.4f}" if gains else "",
                entry["seeds"],
            ]
        )
        if entry["row"] in KEY_ROWS or entry["schedule"] == "anchor":
            key_body.append(body[-1])
    regime_body = []
    for schedule, values in payload["regime"].items():
        regime_body.append(
            [
                schedule,
                ", ".join(str(s) for s in values["min_step"]),
                fmt_mean_std(values["min_nll"], digits=4),
                fmt_mean_std(values["end_nll"], digits=4),
                fmt_mean_std(values["rise_nll"], digits=4),
                fmt_mean_std(values["final_train_loss"], digits=3),
            ]
        )
    timing = []
    for schedule in config["schedules"]:
        group = [run for run in payload["runs"] if run["schedule"] == schedule]
        if group:
            timing.append(
                [
                    schedule,
                    ", ".join(map(str, group[0]["snapshot_steps"])),
                    fmt_mean_std([run["train_wall_s"] for run in group], digits=0),
                    fmt_mean_std([run["curve_wall_s"] for run in group], digits=0),
                    fmt_mean_std([run["validation_eval_wall_s"] + run["test_eval_wall_s"] for run in group], digits=0),
                ]
            )
    model, machine, load, blocks_ = payload["model"], payload["machine"], payload["load_average"], payload["num_blocks"]
    missing, preset = payload["missing_runs"], config.get("preset", "multi_epoch")
    chars = "the whole train part"
    if config["train_chars"] is not None:
        chars = f"the first {config['train_chars']:,} characters of the train part"
    return "\n".join(
        [
            f"# Tiny Shakespeare (characters), small GPT-2 from scratch {PRESETS[preset]['title']}",
            "",
            *([f"**Partial**: not trained in time, left out: {', '.join(missing)}.", ""] if missing else []),
            f"GPT-2 with {model['n_layer']} layers, width {model['n_embd']}, {model['n_head']} heads, no dropout "
            f"({payload['num_parameters']:,} parameters, vocabulary {payload['vocab_size']}); trained on "
            f"{chars} ({blocks_['train']} blocks of {config['block_size']}) for {_epochs(config, blocks_['train'])} "
            f"epochs = {config['steps']} optimizer steps of batch {config['batch_size']}, AdamW (weight decay 0.01), "
            f"peak lr {config['learning_rate']}, warmup "
            f"{config['warmup_steps']}, {config['num_cycles']} cycles / snapshots, seeds {config['seeds']}. "
            f"Validation = characters 90-95 % of the file ({blocks_['validation']} blocks; chooses the best snapshot, "
            f"greedy soup and greedy selection, by NLL); test = 95-100 % ({blocks_['test']} blocks), encoded once, "
            "in the report stage, after every run was trained. Temperature-scaled rows: one temperature per model "
            "(for an ensemble, one shared by its members), the best of a 65-point grid over 0.25-4 on validation. "
            "NLL in nats per predicted character (perplexity = "
            "exp NLL), mean ± std over seeds; `gain vs mean member`: the ensemble's NLL minus its members' mean "
            "NLL (negative = the ensemble is better).",
            "",
            "## Regime: where the validation NLL bottoms out",
            "",
            f"Validation-curve NLL on the first {blocks_['curve']} validation blocks, every {config['curve_every']} "
            "steps (per seed).",
            "",
            markdown_table(
                [
                    "schedule",
                    "step of the minimum (per seed)",
                    "min val. NLL",
                    "val. NLL at the end",
                    "rise",
                    "train loss at the end",
                ],
                regime_body,
            ),
            "",
            "## Key rows",
            "",
            markdown_table(header, key_body),
            "",
            "## All rows",
            "",
            markdown_table(header, body),
            "",
            "## Snapshot steps and wall time per run (seconds, mean ± std over seeds)",
            "",
            markdown_table(
                [
                    "schedule",
                    "snapshot steps",
                    "train()",
                    "validation curve",
                    "evaluation (validation + test, all rows)",
                ],
                timing,
            ),
            "",
            f"Machine: {machine['cpus']} CPU cores, torch {machine['torch']} ({machine['torch_threads']} thread(s)), "
            f"transformers {machine['transformers']}; 1-minute load average {load['min']:.1f}–{load['max']:.1f} "
            f"(sampled in the report stage). This invocation ({config['stage']} stage(s)) took "
            f"{payload['total_wall_s'] / 60:.1f} min.",
        ]
    )


def _epochs(config: dict[str, Any], train_blocks: int) -> str:
    """The passes over the train blocks that `config["steps"]` make."""
    return f"{config['steps'] / math.ceil(train_blocks / config['batch_size']):.3g}"


def plot_curves(runs: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Validation NLL over training (mean over seeds) per schedule, with the snapshot points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 5))
    by_schedule: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_schedule.setdefault(run["schedule"], []).append(run)
    for name, group in by_schedule.items():
        steps = [step for step, _ in group[0]["validation_curve"]]
        nll = [sum(run["validation_curve"][i][1] for run in group) / len(group) for i in range(len(steps))]
        (line,) = axis.plot(steps, nll, label=f"{name} ({len(group)} seeds)", linewidth=1.2)
        points = [i for i, step in enumerate(steps) if step in set(group[0]["snapshot_steps"])]
        axis.scatter([steps[i] for i in points], [nll[i] for i in points], color=line.get_color(), s=28, zorder=3)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("validation NLL per character (dots: snapshots)")
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    started, load = time.time(), LoadMonitor()
    train_text, validation = read_part(args.text_file, "train"), read_part(args.text_file, "validation")
    tokenizer = CharTokenizer(train_text)  # the whole train part's characters, whatever --train_chars
    set_budget(args, train_text)
    if args.stage in ("train", "all"):
        train_stage(args, tokenizer, train_text, validation)
    if args.stage == "train":
        return None
    payload = report_stage(args, tokenizer, validation, load, started)
    name = PRESETS[args.preset]["results"] + ("_quick" if args.quick else "")
    title = f"Tiny Shakespeare, {_epochs(payload['config'], args.train_blocks)} epochs ({args.steps} steps)"
    payload["plots"] = [
        str(plot_curves(payload["runs"], args.results_dir / f"{name}_validation_curve.png", title)),
        str(plot_traces(payload["runs"], args.results_dir / f"{name}_lr_loss.png", title)),
        str(
            plot_per_snapshot(
                [{**run, "validation": per_snapshot(run)} for run in payload["runs"]],
                args.results_dir / f"{name}_nll_per_snapshot.png",
                "nll",
                "validation",
                "NLL per character",
                higher_is_better=False,
            )
        ),
    ]
    markdown = render(payload)
    write_results(name, payload, markdown, args.results_dir)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
