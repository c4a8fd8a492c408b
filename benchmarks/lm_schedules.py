"""A small GPT-2 trained from scratch on Tiny Shakespeare (character level): cosine against SGDR, with the
perplexity of every snapshot, of the snapshot ensembles and of the weight soups.

Data: `../shared/data/lm/tinyshakespeare.txt` cut into three contiguous parts: train = the first 90 % of the
characters, validation = the next 5 %, test = the last 5 %. The vocabulary is the characters of the train
part (plus one id for characters it lacks). Every split is cut into non-overlapping blocks of `block_size`
characters; a block predicts its own next characters. The model is a `GPT2LMHeadModel` (2 layers, width 128,
4 heads, no dropout) trained through the real `Trainer` (`SGDRTrainer` for SGDR). Validation chooses (greedy
soup / greedy ensemble selection); test reports. Ensemble perplexity = exp of the mean NLL of the mean of the
members' token probabilities (`SnapshotEnsemble`'s causal-LM combination); soup = averaged weights.

    python benchmarks/lm_schedules.py            # default scale; --quick for a smoke run
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
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

logger = logging.getLogger("benchmarks.lm")

SCHEDULES = ("cosine", "cosine_with_restarts", "sgdr_tmult1", "sgdr_tmult2", "linear")
SPLITS = (("train", 0.0, 0.9), ("validation", 0.9, 0.95), ("test", 0.95, 1.0))
QUICK = {
    "steps": 12,
    "seeds": [0],
    "batch_size": 8,
    "block_size": 64,
    "warmup_steps": 0,
    "num_cycles": 3,
    "eval_blocks": 16,
    "schedules": ["cosine", "sgdr_tmult2"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text_file", type=Path, default=DATA / "lm" / "tinyshakespeare.txt")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=3e-3, help="peak lr of every schedule")
    parser.add_argument("--warmup_steps", type=int, default=20)
    parser.add_argument("--num_cycles", type=int, default=4)
    parser.add_argument("--n_layer", type=int, default=2)
    parser.add_argument("--n_embd", type=int, default=128)
    parser.add_argument("--n_head", type=int, default=4)
    parser.add_argument("--schedules", nargs="+", default=["cosine", "sgdr_tmult1", "sgdr_tmult2"], choices=SCHEDULES)
    parser.add_argument("--eval_blocks", type=int, default=None, help="blocks per eval split (default: all)")
    parser.add_argument("--eval_batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output_dir", type=Path, default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="smoke run (cosine, SGDR T_mult 2; 12 steps)")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    return args


# ---------------------------------------------------------------------------------------------- data
class CharTokenizer:
    """Character-level ids: the train part's characters, id 0 for a character it lacks."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.ids = {char: i + 1 for i, char in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.ids.get(char, 0) for char in text], dtype=torch.long)


def blocks(ids: torch.Tensor, block_size: int, limit: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Non-overlapping blocks (the remainder dropped) as causal-LM examples predicting their own tokens."""
    rows = ids[: len(ids) // block_size * block_size].view(-1, block_size)
    if limit:
        rows = rows[:limit]
    return [{"input_ids": row, "attention_mask": torch.ones_like(row), "labels": row} for row in rows]


def load_splits(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    return {name: text[int(len(text) * lo) : int(len(text) * hi)] for name, lo, hi in SPLITS}


def gpt2_config(args: argparse.Namespace, vocab_size: int) -> Any:
    """The small character-level GPT-2 of the LM benchmarks (no dropout; `--n_layer/--n_embd/--n_head`)."""
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


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    from transformers import GPT2LMHeadModel

    started, load = time.time(), LoadMonitor()
    texts = load_splits(args.text_file)
    tokenizer = CharTokenizer(texts["train"])
    train = blocks(tokenizer.encode(texts["train"]), args.block_size)
    loaders = {
        split: DataLoader(
            blocks(tokenizer.encode(texts[split]), args.block_size, args.eval_blocks), batch_size=args.eval_batch_size
        )
        for split in ("validation", "test")
    }
    model_config = gpt2_config(args, tokenizer.vocab_size)

    def make_model() -> torch.nn.Module:
        return GPT2LMHeadModel(model_config)

    config = RunConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        num_cycles=args.num_cycles,
        logging_steps=max(1, args.steps // 50),
        weight_decay=0.01,
        task="tinyshakespeare-char",
    )
    work = Path(args.output_dir or tempfile.mkdtemp(prefix="hf_sgdr_lm_bench_"))
    runs: list[dict[str, Any]] = []
    jobs = [(seed, schedule) for seed in args.seeds for schedule in make_schedules(args.schedules, args.num_cycles)]
    for seed, schedule in tqdm(jobs, desc="train + evaluate", unit="run"):
        out = train_run(schedule, make_model, train, config, seed, work / f"{schedule.name}-seed{seed}")
        load.sample()
        run: dict[str, Any] = {
            "schedule": schedule.name,
            "seed": seed,
            "train_wall_s": out.train_wall_s,
            "snapshot_steps": out.snapshot_steps,
            "lr": out.lr,
            "loss": out.loss,
        }
        tick = time.perf_counter()
        run["validation"] = evaluate_snapshots(
            out.snapshot_dir, loaders["validation"], metrics=["perplexity", "nll"], eval_split="validation"
        )
        run["test"] = evaluate_snapshots(
            out.snapshot_dir,
            loaders["test"],
            loaders["validation"],
            metrics=["perplexity", "nll"],
            eval_split="test",
            selection_split="validation",
        )
        run["eval_wall_s"] = time.perf_counter() - tick
        runs.append(run)
        shutil.rmtree(out.snapshot_dir.parent, ignore_errors=True)
        logger.info(
            "%s seed %d: %.0f s, test perplexity final %.3f, ensemble(all) %.3f, soup %.3f",
            schedule.name,
            seed,
            out.train_wall_s,
            run["test"]["final"]["perplexity"],
            run["test"]["ensemble_all"]["perplexity"],
            run["test"]["uniform_soup"]["perplexity"],
        )
    if args.output_dir is None:
        shutil.rmtree(work, ignore_errors=True)

    name = "lm_schedules_quick" if args.quick else "lm_schedules"
    payload: dict[str, Any] = {
        "benchmark": "lm_schedules",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": {"class": "GPT2LMHeadModel", **{k: getattr(model_config, k) for k in ("n_layer", "n_embd", "n_head")}},
        "num_parameters": sum(p.numel() for p in make_model().parameters()),
        "vocab_size": tokenizer.vocab_size,
        "splits": {split: {"characters": len(texts[split]), "fraction": [lo, hi]} for split, lo, hi in SPLITS},
        "num_blocks": {"train": len(train), **{s: len(loader.dataset) for s, loader in loaders.items()}},
        "stock_snapshots": "equal intervals after the warmup (the cycle ends of cosine_with_restarts)",
        "machine": machine_info(),
        "load_average": load.summary(),
        "total_wall_s": time.time() - started,
        "runs": runs,
    }
    payload["summary"] = summarize_over_seeds(runs, args.schedules, ("validation", "test"), "perplexity")
    payload["plots"] = [
        str(
            plot_traces(
                runs, args.results_dir / f"{name}_lr_loss.png", f"Tiny Shakespeare, GPT-2 char, {args.steps} steps"
            )
        ),
        str(
            plot_per_snapshot(
                runs,
                args.results_dir / f"{name}_perplexity_per_snapshot.png",
                "perplexity",
                "validation",
                "perplexity",
                higher_is_better=False,
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
    body = []
    for entry in payload["summary"]:
        cells = [
            fmt_mean_std(entry[split]["values"], digits=3) if split in entry else "(chosen on it)"
            for split in ("validation", "test")
        ]
        body.append([entry["schedule"], entry["label"], *cells, entry["seeds"]])
    timing = wall_time_rows(runs, config["schedules"], ("train_wall_s", "eval_wall_s"))
    model = payload["model"]
    return "\n".join(
        [
            "# Tiny Shakespeare (characters), small GPT-2 from scratch: cosine vs SGDR, ensembles and soups",
            "",
            f"GPT-2 with {model['n_layer']} layers, width {model['n_embd']}, {model['n_head']} heads "
            f"({payload['num_parameters']:,} parameters, vocabulary {payload['vocab_size']}); {config['steps']} "
            f"optimizer steps of {config['batch_size']} blocks of {config['block_size']} characters, peak lr "
            f"{config['learning_rate']}, warmup {config['warmup_steps']}, {config['num_cycles']} snapshots, seeds "
            f"{config['seeds']}. Contiguous splits of the file: train 0–90 %, validation 90–95 % (selection), test "
            f"95–100 % (report); blocks: {payload['num_blocks']}. Perplexity per character (lower is better). "
            f"Stock schedules: snapshots at {payload['stock_snapshots']}.",
            "",
            markdown_table(
                ["schedule", "model", "validation ppl (mean ± std)", "test ppl (mean ± std)", "seeds"], body
            ),
            "",
            "## Wall time per run (seconds, mean ± std over seeds)",
            "",
            markdown_table(
                ["schedule", "snapshot steps", "train()", "evaluation (validation + test, all rows)"], timing
            ),
            "",
            conditions_text(payload["machine"], payload["load_average"], payload["total_wall_s"]),
        ]
    )


if __name__ == "__main__":
    main()
