"""Write the summary tables of BENCHMARKS.md from the results files in `benchmarks/results/`.

    python benchmarks/summarize.py           # rewrite BENCHMARKS.md's generated blocks from the JSON results
    python benchmarks/summarize.py --check   # exit 1 if BENCHMARKS.md differs from what the results give

Every number in a generated block is read from a results file that a benchmark script wrote
(`glue_multi_epoch.json`, `glue_multi_epoch_rte.json`, `lm_multi_epoch.json`, `glue_schedules.json` and
`lm_schedules.json` (the `--preset short_budget` runs), `overhead.json`, `gpu/gpu.json`); nothing is copied by
hand. A block lies between `<!-- BEGIN GENERATED: <name> -->` and `<!-- END GENERATED: <name> -->`; the prose
around it is written by hand.
Standard library only: `tests/test_docs.py` runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TARGET = REPO / "BENCHMARKS.md"
COMMAND = "python benchmarks/summarize.py"


def _load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """As the benchmark scripts report them: the mean and the sample standard deviation over seeds."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(values: Sequence[float], digits: int, scale: float = 1.0, std: bool = True) -> str:
    mean, spread = _mean_std([v * scale for v in values])
    if not std or len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _row(summary: list[dict[str, Any]], schedule: str, label: str) -> dict[str, Any]:
    for row in summary:
        if row["schedule"] == schedule and label in (row["row"], row.get("label")):
            return row
    raise KeyError(f"no row {label!r} for {schedule!r}")


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _anchor_label(summary: list[dict[str, Any]]) -> str:
    return next(r["row"] for r in summary if r["schedule"] == "anchor" and r["row"].startswith("deep ensemble of 3 "))


def classification(name: str) -> str:
    """SST-2 / RTE over several epochs: per schedule, the final model, the best snapshot and the ensemble of all."""
    data = _load(f"{name}.json")
    summary = data["summary"]
    header = ["schedule", "final model NLL", "best snapshot NLL", "ensemble of all: acc. %", "NLL", "ECE"]
    rows = []
    for schedule in data["config"]["schedules"]:
        final = _row(summary, schedule, "final model")["holdout"]
        best = _row(summary, schedule, "best snapshot (validation NLL)")["holdout"]
        ensemble = _row(summary, schedule, "ensemble, all")["holdout"]
        rows.append(
            [f"`{schedule}`", _fmt(final["nll"], 3), _fmt(best["nll"], 3), _fmt(ensemble["accuracy"], 2, 100),
             _fmt(ensemble["nll"], 3), _fmt(ensemble["ece"], 3)]
        )  # fmt: skip
    anchor = _row(summary, "anchor", _anchor_label(summary))["holdout"]
    rows.append(
        ["deep ensemble of 3 cosine runs (3x compute)", "", "", _fmt(anchor["accuracy"], 2, 100),
         _fmt(anchor["nll"], 3), _fmt(anchor["ece"], 3)]
    )  # fmt: skip
    goal = data["goal"]
    seeds = ", ".join(map(str, data["config"]["seeds"]))
    lines = _table(header, rows)
    lines += [
        "",
        f"Holdout of {data['num_holdout']:,} examples, mean ± std over seeds {seeds}; "
        f"{data['config']['steps']} optimizer steps per run. The goal (the best SGDR ensemble, chosen on validation, "
        f"≥ 15 % lower NLL and ≥ 1 point more accurate than the best stock row): {goal['sgdr_row']} against "
        f"{goal['stock_row']}, NLL {goal['relative_nll_gain'] * 100:+.1f} %, accuracy {goal['accuracy_points']:+.2f} "
        f"points: **{'met' if goal['met'] else 'not met'}**.",
    ]
    return "\n".join(lines)


def language_model() -> str:
    """GPT-2 from scratch over many epochs: test NLL per character, with and without a temperature."""
    data = _load("lm_multi_epoch.json")
    summary = data["summary"]
    header = ["schedule", "final model", "final, temperature-scaled", "best snapshot", "ensemble of all",
              "ensemble, members temperature-scaled"]  # fmt: skip
    labels = ["final model", "final model, temperature-scaled", "best snapshot (validation NLL)", "ensemble, all",
              "ensemble, all, members temperature-scaled"]  # fmt: skip
    rows = [
        [f"`{s}`", *(_fmt(_row(summary, s, label)["test"]["nll"], 3) for label in labels)]
        for s in data["config"]["schedules"]
    ]
    anchor = [r for r in summary if r["schedule"] == "anchor"]
    deep = next(r for r in anchor if "temperature" not in r["row"])
    tempered = next(r for r in anchor if "temperature" in r["row"])
    rows.append(
        ["deep ensemble of 3 cosine runs (3x compute)", "", "", "", _fmt(deep["test"]["nll"], 3),
         _fmt(tempered["test"]["nll"], 3)]
    )  # fmt: skip
    cosine = data["regime"]["cosine"]
    lines = _table(header, rows)
    lines += [
        "",
        f"Test NLL in nats per character, mean ± std over seeds {', '.join(map(str, data['config']['seeds']))}. "
        f"The regime: `cosine`'s validation NLL bottoms out at step {cosine['min_step'][0]} "
        f"and rises by {_fmt(cosine['rise_nll'], 2, std=False)} nats by the end.",
    ]
    return "\n".join(lines)


#: The short-budget rows as the staged scripts name them, and as the earlier one-process scripts did (the
#: committed `glue_schedules.json` and `lm_schedules.json`, whose split entries hold `values` of one metric).
SHORT_ROWS = {"final model": "final", "ensemble, all": "ensemble_all", "uniform soup": "uniform_soup"}


def _short_values(data: dict[str, Any], schedule: str, label: str, split: str, metric: str) -> list[float]:
    """A short-budget row's `metric` over seeds on `split`, from either script's results."""
    if data["benchmark"] in ("glue_schedules", "lm_schedules"):  # written by the earlier one-process scripts
        return _row(data["summary"], schedule, SHORT_ROWS[label])[split]["values"]
    return _row(data["summary"], schedule, label)[split][metric]


def short_budget() -> str:
    """The short-budget counter-examples (`--preset short_budget`): the final model against its ensembles and
    soup."""
    header = ["benchmark", "schedule", "final model", "ensemble of all", "uniform soup"]
    rows = []
    for label, name, split, digits, scale, metric in (
        ("SST-2, half an epoch (holdout acc. %)", "glue_schedules", "holdout", 2, 100, "accuracy"),
        ("GPT-2, 0.6 epoch (test ppl)", "lm_schedules", "test", 3, 1, "perplexity"),
    ):
        data = _load(f"{name}.json")
        for schedule in data["config"]["schedules"]:
            cells = [_fmt(_short_values(data, schedule, row, split, metric), digits, scale) for row in SHORT_ROWS]
            rows.append([label, f"`{schedule}`", *cells])
    return "\n".join(
        [*_table(header, rows), "", "Mean ± std over 3 seeds; higher accuracy and lower perplexity are better."]
    )


def overhead() -> str:
    """What the snapshots cost (CPU) and what an ensemble costs to evaluate, on CPU and on one GPU."""
    cpu = _load("overhead.json")
    gpu = _load("gpu/gpu.json")["parts"]
    training, evaluation = cpu["training"], cpu["evaluation"]["summary"]
    stall = gpu["training"]["result"]["reported_stall_ms"]
    ratios = [size["ratio"] for size in gpu["ensemble"]["result"]["sizes"]]
    load = gpu["load_verify"]["result"]
    rows = [
        ["CPU: `SGDRTrainer` (5 snapshots + optimizer resets) / `Trainer` + `cosine`, wall time",
         f"{1 + training['wall_s']['overhead_pct'] / 100:.3f}x (attributable to SGDR: "
         f"{training['attributable_pct_median']:+.2f} %)"],
        ["CPU: `SnapshotEnsemble.evaluate` of 5 snapshots / 5 forward passes of one model",
         f"{evaluation['ensemble']['x_reference_wall_median']:.2f}x"],
        ["GPU: training-thread time per snapshot", f"{min(stall):.1f}-{max(stall):.1f} ms"],
        ["GPU: `SGDRTrainer` (a snapshot every 40 steps) / `Trainer` + `cosine`",
         f"{gpu['training']['result']['ratio']:.2f}x"],
        ["GPU: ensemble `evaluate` / K forward passes of one resident model",
         f"{min(ratios):.2f}-{max(ratios):.2f}x"],
        [f"GPU: load + verify of {load['members']} members ({load['bytes'] / load['members'] / 1e6:.0f} MB each)",
         f"{load['load_verify_s']:.2f} s"],
        ["GPU: the README's GLUE job (`recipes/glue.py`, bf16)", f"{gpu['recipe']['result']['seconds']:.0f} s"],
    ]  # fmt: skip
    return "\n".join(_table(["measure", "result"], rows))


#: block name -> function writing its body, in BENCHMARKS.md order
BLOCKS: dict[str, Callable[[], str]] = {
    "sst2": lambda: classification("glue_multi_epoch"),
    "rte": lambda: classification("glue_multi_epoch_rte"),
    "lm": language_model,
    "short_budget": short_budget,
    "overhead": overhead,
}


def _markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- BEGIN GENERATED: {name} (by `{COMMAND}`; do not edit by hand) -->",
        f"<!-- END GENERATED: {name} -->",
    )


def generated(text: str) -> str:
    """`text` (BENCHMARKS.md) with every generated block written afresh from the results files."""
    for name, body in BLOCKS.items():
        begin, end = _markers(name)
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), flags=re.S)
        if not pattern.search(text):
            raise ValueError(f"BENCHMARKS.md has no generated block {name!r}: expected the line {begin!r}")
        text = pattern.sub(lambda _, b=begin, e=end, f=body: f"{b}\n{f()}\n{e}", text, count=1)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether BENCHMARKS.md is out of date")
    args = parser.parse_args(argv)
    old = TARGET.read_text(encoding="utf-8")
    new = generated(old)
    if new == old:
        return 0
    if args.check:
        print(f"BENCHMARKS.md is out of date with benchmarks/results/; run `{COMMAND}`", file=sys.stderr)
        return 1
    TARGET.write_text(new, encoding="utf-8")
    print("wrote BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
