"""What the schedule benchmarks share: the schedules compared, one `Trainer` run with its traces and
snapshots, mean ± std tables, machine facts, plots and result files.

Imported by `glue_multi_epoch.py`, `lm_multi_epoch.py` and `overhead.py` (run as scripts from the repository
root, so `benchmarks/` is on `sys.path`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    set_seed,
)

import hf_sgdr  # registers lr_scheduler_type="sgdr"
from hf_sgdr.snapshots import SnapshotEnsemble
from hf_sgdr.training import SGDRTrainer

logger = logging.getLogger("benchmarks")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
SHARED = Path(os.environ.get("HF_SGDR_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"


def setup_logging(verbose: bool = False) -> None:
    """Progress goes to stderr through `logging`; the libraries' chatter is kept at warnings."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in ("transformers", "datasets", "hf_sgdr", "accelerate"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---------------------------------------------------------------------------------------------- schedules
@dataclass(frozen=True)
class Schedule:
    """One compared schedule: a transformers `lr_scheduler_type`, its `lr_scheduler_kwargs` and, for SGDR,
    the `SGDRTrainer` options it needs (e.g. `restart_from`)."""

    name: str
    lr_scheduler_type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_sgdr(self) -> bool:
        return self.lr_scheduler_type == "sgdr"


def make_schedules(names: Sequence[str], num_cycles: int) -> list[Schedule]:
    """The named schedules; restarts/cycles use `num_cycles` (SGDR fits its cycles to the budget)."""
    known = {
        "linear": Schedule("linear", "linear"),
        "cosine": Schedule("cosine", "cosine"),
        "cosine_with_restarts": Schedule("cosine_with_restarts", "cosine_with_restarts", {"num_cycles": num_cycles}),
        "sgdr_tmult1": Schedule("sgdr_tmult1", "sgdr", {"num_cycles": num_cycles, "T_mult": 1}),
        "sgdr_tmult2": Schedule("sgdr_tmult2", "sgdr", {"num_cycles": num_cycles, "T_mult": 2}),
        # One long fine-tuning cycle, then short cycles at half its peak: from the first cycle's end ("star",
        # Sadrtdinov et al. 2023, fresh optimizer state each time) or each from the last (FGE-style).
        "star": Schedule("star", "sgdr", {"cycles": star_cycles(num_cycles)}, {"restart_from": "first"}),
        "fge": Schedule("fge", "sgdr", {"cycles": star_cycles(num_cycles)}),
    }
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown schedule(s) {unknown}; known: {list(known)}")
    return [known[n] for n in names]


def star_cycles(num_cycles: int, first: float = 0.4, peak: float = 0.5) -> list[dict[str, float]]:
    """A cycle list: the first cycle takes `first` of the budget at the full peak, the other `num_cycles - 1`
    share the rest equally at `peak` times it."""
    rest = (1.0 - first) / max(1, num_cycles - 1)
    return [{"length": first, "peak": 1.0}, *({"length": rest, "peak": peak} for _ in range(num_cycles - 1))]


def equal_interval_steps(steps: int, warmup_steps: int, count: int) -> list[int]:
    """`count` snapshot steps at equal intervals after the warmup (the cycle ends of `cosine_with_restarts`)."""
    return [warmup_steps + math.floor((steps - warmup_steps) * i / count + 0.5) for i in range(1, count + 1)]


# ---------------------------------------------------------------------------------------------- callbacks
class TraceCallback(TrainerCallback):
    """Records the lr each optimizer step uses (read before the step) and the logged training losses."""

    def __init__(self) -> None:
        self.lr: list[float] = []
        self.loss: list[tuple[int, float]] = []

    def on_step_begin(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            self.lr.append(float(optimizer.param_groups[0]["lr"]))

    def on_log(
        self, args: Any, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if logs and "loss" in logs:
            self.loss.append((int(state.global_step), float(logs["loss"])))


class EqualIntervalSnapshots(TrainerCallback):
    """Snapshots of a stock-schedule run at given steps, kept as a `SnapshotEnsemble` (CPU copies)."""

    def __init__(self, steps: Iterable[int], ensemble: SnapshotEnsemble) -> None:
        self.steps = set(steps)
        self.ensemble = ensemble

    def on_step_end(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.global_step in self.steps:
            optimizer = kwargs["optimizer"]
            self.ensemble.add_model(
                kwargs["model"],
                global_step=state.global_step,
                scheduler_step=state.global_step,
                lr=[group["lr"] for group in optimizer.param_groups],
            )


# ---------------------------------------------------------------------------------------------- one run
@dataclass
class RunConfig:
    """What every run of a benchmark shares (only the schedule and the seed vary)."""

    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    num_cycles: int
    logging_steps: int
    weight_decay: float = 0.0
    task: str | None = None
    train_sampling_strategy: str = "random"


@dataclass
class RunOutcome:
    """A finished training run: where its snapshots are, when they were taken, its traces and wall time."""

    train_wall_s: float
    snapshot_dir: Path
    snapshot_steps: list[int]
    lr: list[float]
    loss: list[tuple[int, float]]


def train_run(
    schedule: Schedule,
    make_model: Callable[[], torch.nn.Module],
    train_dataset: Any,
    config: RunConfig,
    seed: int,
    output_dir: Path,
    *,
    data_collator: Any = None,
    tokenizer: Any = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> RunOutcome:
    """Train one model with `schedule` through the real `Trainer` (`SGDRTrainer` for SGDR) and keep snapshots.

    SGDR runs snapshot at their cycle ends (`SGDRCallback`, written to `output_dir/snapshots`); stock
    schedules snapshot at `config.num_cycles` equal intervals after the warmup, saved to the same place.
    `train_wall_s` is the wall time of `trainer.train()` (snapshot writes included, and whatever the extra
    `callbacks` do).
    """
    set_seed(seed)
    model = make_model()
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=schedule.lr_scheduler_type,
        lr_scheduler_kwargs=dict(schedule.kwargs),
        logging_steps=config.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        train_sampling_strategy=config.train_sampling_strategy,
    )
    trace = TraceCallback()
    snapshot_dir = output_dir / "snapshots"
    common = {"model": model, "args": args, "train_dataset": train_dataset, "data_collator": data_collator}
    stock_snapshots: EqualIntervalSnapshots | None = None
    if schedule.is_sgdr:
        trainer: Trainer = SGDRTrainer(
            **common, processing_class=tokenizer, snapshot_task=config.task, **schedule.options
        )
    else:
        ensemble = SnapshotEnsemble(config.num_cycles, tokenizer=tokenizer, task=config.task, progress=False)
        stock_snapshots = EqualIntervalSnapshots(
            equal_interval_steps(config.steps, config.warmup_steps, config.num_cycles), ensemble
        )
        trainer = Trainer(**common, processing_class=tokenizer, callbacks=[stock_snapshots])
    trainer.remove_callback(PrinterCallback)  # the traces keep the logs; progress goes through `logging`
    trainer.add_callback(trace)
    for callback in callbacks:
        trainer.add_callback(callback)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    if stock_snapshots is not None:
        stock_snapshots.ensemble.training = {"learning_rate": config.learning_rate, "num_training_steps": config.steps}
        stock_snapshots.ensemble.save_pretrained(snapshot_dir)
    steps = [record.global_step for record in SnapshotEnsemble.from_pretrained(snapshot_dir, progress=False).records]
    return RunOutcome(wall, snapshot_dir, steps, trace.lr, trace.loss)


# ---------------------------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt_mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- conditions
class LoadMonitor:
    """Samples the 1-minute load average at the points the benchmark asks."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def sample(self) -> float:
        value = os.getloadavg()[0]
        self.samples.append(value)
        return value

    def summary(self) -> dict[str, float]:
        samples = self.samples or [self.sample()]
        return {"min": min(samples), "median": statistics.median(samples), "max": max(samples)}


def machine_info() -> dict[str, Any]:
    import transformers

    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "hf_sgdr": hf_sgdr.__version__,
    }


def conditions_text(machine: dict[str, Any], load: dict[str, float], total_s: float) -> str:
    return (
        f"Machine: {machine['cpus']} CPU cores ({machine['processor']}), no GPU, {machine['platform']}; torch "
        f"{machine['torch']} ({machine['torch_threads']} threads), transformers {machine['transformers']}, hf_sgdr "
        f"{machine['hf_sgdr']}. Shared machine: 1-minute load average {load['min']:.1f}–{load['max']:.1f} "
        f"(median {load['median']:.1f}) during the run. Total time {total_s / 60:.1f} min."
    )


def write_results(name: str, payload: dict[str, Any], markdown: str, results_dir: Path) -> tuple[Path, Path]:
    """`<name>.json` and `<name>.md` in `results_dir`."""
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_dir / f"{name}.json", results_dir / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n", encoding="utf-8")
    md_path.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return json_path, md_path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------------------------------------- plots
def plot_traces(runs: Sequence[dict[str, Any]], path: Path, title: str, loss_ylabel: str = "training loss") -> Path:
    """Two panels per schedule (first seed): the lr each step used with the snapshot points, and the loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = {}
    for run in runs:
        first.setdefault(run["schedule"], run)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for name, run in first.items():
        lr = run["lr"]
        (line,) = top.plot(range(1, len(lr) + 1), lr, label=name, linewidth=1.2)
        points = [s for s in run["snapshot_steps"] if 1 <= s <= len(lr)]
        top.scatter(points, [lr[s - 1] for s in points], color=line.get_color(), marker="o", s=28, zorder=3)
        if run["loss"]:
            steps, losses = zip(*run["loss"], strict=True)
            bottom.plot(steps, losses, label=name, color=line.get_color(), linewidth=1.0)
    top.set_ylabel("learning rate (dots: snapshots)")
    top.legend(fontsize=8)
    top.set_title(title)
    bottom.set_ylabel(loss_ylabel)
    bottom.set_xlabel("optimizer step")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_per_snapshot(
    runs: Sequence[dict[str, Any]], path: Path, metric: str, split: str, ylabel: str, higher_is_better: bool = True
) -> Path:
    """Metric of each snapshot (mean over seeds, error bars = std) and of the all-snapshot ensemble (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_schedule: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_schedule.setdefault(run["schedule"], []).append(run)
    figure, axis = plt.subplots(figsize=(9, 5))
    for name, group in by_schedule.items():
        steps = group[0][split]["snapshot_steps"]
        values = [[run[split]["snapshots"][i][metric] for run in group] for i in range(len(steps))]
        stats = [mean_std(v) for v in values]
        bar = axis.errorbar(
            steps, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3, label=f"{name} snapshots"
        )
        ensemble = mean_std([run[split]["ensemble_all"][metric] for run in group])[0]
        axis.axhline(ensemble, color=bar.lines[0].get_color(), linestyle="--", linewidth=0.9)
    axis.set_xlabel("optimizer step of the snapshot")
    axis.set_ylabel(f"{ylabel} ({split}; dashed: ensemble of all snapshots)")
    better = "higher" if higher_is_better else "lower"
    axis.set_title(f"{ylabel} per snapshot, mean ± std over seeds ({better} is better)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def arm_trainer(
    kind: str, model: torch.nn.Module, common: dict[str, Any], data: Any, callbacks: list[Any], **sgdr: Any
) -> Trainer:
    """One arm of an overhead comparison: the stock `Trainer` with `cosine`, or `SGDRTrainer` with `sgdr` options
    (snapshots, resets), on the same `TrainingArguments` keywords `common`."""
    if kind == "cosine":
        return Trainer(
            model=model,
            args=TrainingArguments(lr_scheduler_type="cosine", **common),
            train_dataset=data,
            callbacks=callbacks,
        )
    return SGDRTrainer(model=model, args=TrainingArguments(**common), train_dataset=data, callbacks=callbacks, **sgdr)
