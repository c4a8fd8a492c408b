"""The model card (README.md) and the schedule plot of a snapshot ensemble.

The card is rendered from `hf_sgdr/model_cards/snapshot_ensemble.md` with `huggingface_hub.ModelCard.from_template`:
base model, dataset, the schedule as tables and a plot, the results (every snapshot, the ensembles, the
soups), `model-index` metadata through `EvalResult`, and a snippet that loads and uses the ensemble.
"""

from __future__ import annotations

import logging
import numbers
from pathlib import Path
from typing import Any

from .._version import __version__
from ..local_paths import is_local, last_part, public_text
from ..schedule import SGDRSchedule
from ..snapshot_format.layout import CARD_NAME, PLOT_NAME, snapshot_name
from ..snapshot_format.manifest import SnapshotManifest
from .evaluation import EvaluationReport
from .tasks.registry import LM_BLOCKS, KindFacts, kind_facts, kind_of_model

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "snapshot_ensemble.md"
_PAIR_TASKS = {"mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}


#: A card lists at most this many cycles (and plots a schedule only up to it): a manifest may claim any budget.
MAX_CARD_CYCLES = 200


def template_path() -> Path:
    """The card template, package data under `hf_sgdr/model_cards/` (in a wheel and in a checkout alike)."""
    return Path(__file__).resolve().parents[1] / "model_cards" / TEMPLATE_NAME


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0 else None


def schedule_facts(manifest: SnapshotManifest) -> tuple[SGDRSchedule, int, float | None] | None:
    """(schedule, training budget in steps, peak lr or None) from the manifest, when it records a schedule."""
    if not manifest.schedule:
        return None
    schedule = SGDRSchedule.from_dict(manifest.schedule)
    budget = _number(manifest.training.get("num_training_steps")) or max(
        (r.scheduler_step for r in manifest.snapshots), default=0
    )
    if not budget:
        return None
    peak = _number(manifest.training.get("learning_rate")) or schedule.eta_max
    return schedule, int(budget), peak


def _cycles_in(schedule: SGDRSchedule, budget: int) -> int:
    """How many cycles start within `budget` steps (one O(log) lookup, whatever the budget)."""
    return schedule.position(budget - 1).cycle + 1


def write_schedule_plot(manifest: SnapshotManifest, path: Path) -> bool:
    """Draw the lr schedule with the snapshot points to `path` (PNG); False when there is nothing to draw
    or more cycles than a plot can show (a manifest may claim any budget)."""
    facts = schedule_facts(manifest)
    if facts is None:
        return False
    if _cycles_in(facts[0], facts[1]) > MAX_CARD_CYCLES:
        logger.warning(f"the schedule has more than {MAX_CARD_CYCLES} cycles: the card will have no schedule plot")
        return False
    try:
        import matplotlib.pyplot as plt

        from ..plotting import plot_schedule
    except ImportError:
        logger.warning("matplotlib is not installed: the card will have no schedule plot (pip install 'hf-sgdr[plot]')")
        return False
    schedule, budget, peak = facts
    steps = [r.scheduler_step for r in manifest.snapshots if 0 < r.scheduler_step <= budget]
    figure = plot_schedule(schedule, budget, [peak or 1.0], snapshot_steps=steps, path=path)
    plt.close(figure)
    return True


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def schedule_tables(manifest: SnapshotManifest) -> tuple[str, str]:
    """(hyper-parameter table, cycle table) in Markdown; empty strings without a recorded schedule."""
    facts = schedule_facts(manifest)
    if facts is None:
        return "", ""
    schedule, budget, peak = facts
    params = _table(["parameter", "value"], [[f"`{k}`", _fmt(v)] for k, v in schedule.to_dict().items()])
    params += f"\n| training steps | {budget} |" + (f"\n| peak lr | {_fmt(peak)} |" if peak else "")
    by_cycle = {r.cycle: r.name for r in manifest.snapshots}
    lr_label = "lr" if peak else "lr / peak"
    count = _cycles_in(schedule, budget)
    shown = budget if count <= MAX_CARD_CYCLES else schedule.cycle_start(MAX_CARD_CYCLES)
    rows = [
        [str(c.cycle), f"{c.start}-{c.end}", str(c.length), _fmt(c.max_lr), _fmt(c.min_lr), by_cycle.get(c.cycle, "-")]
        for c in schedule.describe(shown, peak or 1.0)
    ]
    if count > MAX_CARD_CYCLES:
        rows.append(["...", f"{count - MAX_CARD_CYCLES} more cycles", "", "", "", ""])
    cycles = _table(["cycle", "steps", "length", f"max {lr_label}", f"min {lr_label}", "snapshot"], rows)
    return params, cycles


def snapshot_table(manifest: SnapshotManifest) -> str:
    """One row per snapshot: cycle, steps, lr, train loss and the metrics recorded at training time."""
    metric_names = sorted({k for r in manifest.snapshots for k in (r.eval_metrics or {})})
    header = ["snapshot", "cycle", "global step", "scheduler step", "epoch", "lr", "train loss", *metric_names]
    rows = [
        [
            r.name,
            str(r.cycle),
            str(r.global_step),
            str(r.scheduler_step),
            _fmt(r.epoch),
            ", ".join(_fmt(x) for x in r.lr) or "-",
            _fmt(r.train_loss),
            *(_fmt((r.eval_metrics or {}).get(m)) for m in metric_names),
        ]
        for r in manifest.snapshots
    ]
    return _table(header, rows)


def _indexed_rows(report: EvaluationReport) -> list[Any]:
    """The rows worth metadata: the full ensemble, the soups, the chosen rows and the last snapshot alone."""
    snapshots = report.rows_of("snapshot")
    full = [r for r in report.rows_of("ensemble") if len(r.members) == len(snapshots)]
    chosen = [r for r in report.rows if r.kind in ("uniform_soup", "best_snapshot", "greedy_soup", "greedy_ensemble")]
    return full + chosen + snapshots[-1:]


def _eval_results(report: EvaluationReport, dataset: str, config: str | None, task_type: str) -> list[Any]:
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_config=config,
            dataset_split=public_text(report.eval_split),
            metric_type=metric,
            metric_value=row.metrics[metric],
            metric_name=f"{metric} ({row.name})",
        )
        for row in _indexed_rows(report)
        for metric in report.metrics
    ]


def _kind(manifest: SnapshotManifest) -> KindFacts:
    """The kind of the manifest's models as far as their Auto class tells (sequence classification: class scores)."""
    return kind_facts(kind_of_model(manifest.auto_class))


def _snippets(manifest: SnapshotManifest, repo: str) -> tuple[str, str]:
    last = manifest.snapshots[-1].name if manifest.snapshots else snapshot_name(0)
    data_kind = _kind(manifest).data
    if data_kind == LM_BLOCKS:
        data = 'dataloader = lm_dataloader(ensemble.tokenizer, ["Text to score with the ensemble."], block_size=128)'
        use, imports = "print(ensemble.predict(dataloader).perplexity)", "lm_dataloader"
    else:
        use = 'prediction = ensemble.predict(dataloader, method="average")\n'
        use += "print(prediction.predictions, prediction.scores)"
        if data_kind is None:  # the user builds the batches (token classification, multiple choice)
            data = f"dataloader = ...  # batches of what {manifest.auto_class} takes (input_ids, attention_mask, ...)"
            imports = ""
        else:
            pairs = ', text_pairs=["The second sentence of the pair."]' if (manifest.task or "") in _PAIR_TASKS else ""
            data = f'dataloader = text_dataloader(ensemble.tokenizer, ["A first example to classify."]{pairs})'
            imports = "text_dataloader"
    load = f'ensemble = SnapshotEnsemble.from_pretrained("{repo}")'
    names = ", ".join(["SnapshotEnsemble", *([imports] if imports else [])])
    usage = f"from hf_sgdr.snapshots import {names}\n\n{load}\n{data}\n{use}"
    auto = manifest.auto_class or "AutoModel"
    if manifest.snapshot_type == "peft_adapter":
        single = (
            f"from peft import PeftModel\nfrom transformers import {auto}\n\n"
            f'base = {auto}.from_pretrained("{public_text(manifest.base_model or "", names_a_path=True)}")\n'
            f'model = PeftModel.from_pretrained(base, "{repo}", subfolder="{last}")'
        )
    else:
        single = f'from transformers import {auto}\n\nmodel = {auto}.from_pretrained("{repo}", subfolder="{last}")'
    return usage, single


def build_card(
    manifest: SnapshotManifest,
    *,
    report: EvaluationReport | None = None,
    repo_id: str | None = None,
    dataset: str | None = None,
    has_plot: bool = True,
    template: str | Path | None = None,
) -> Any:
    """Render the model card (a `huggingface_hub.ModelCard`) for the ensemble described by `manifest`."""
    from huggingface_hub import ModelCard, ModelCardData

    named = dataset or (report.dataset if report else None) or manifest.training.get("dataset_name")
    # A local dataset or base model (the recipes record local folders absolute) is shown by its last part only:
    # neither the uploader's folders nor a link to no Hub repo.
    local = named is not None and is_local(named)
    dataset, local_dataset = (None, last_part(named)) if local else (named, None)
    base_model = manifest.base_model
    hub_base_model = None if base_model is None or is_local(base_model) else base_model
    config = manifest.training.get("dataset_config_name") or (manifest.task if dataset == "nyu-mll/glue" else None)
    task_type = _kind(manifest).pipeline_tag
    shown_base = public_text(base_model, names_a_path=True) if base_model else "a model"
    title = repo_id.split("/")[-1] if repo_id else f"SGDR snapshot ensemble of {shown_base}"
    eval_results = _eval_results(report, dataset, config, task_type) if report and dataset else None
    data = ModelCardData(
        base_model=hub_base_model,
        datasets=[dataset] if dataset else None,
        library_name="hf-sgdr",
        pipeline_tag=task_type,
        tags=["hf-sgdr", "sgdr", "snapshot-ensemble", *([manifest.task] if manifest.task else [])],
        model_name=title,
        eval_results=eval_results,
        metrics=list(report.metrics) if report else None,
    )
    params, cycles = schedule_tables(manifest)
    if report is not None:
        chosen = (
            f"; the greedy and fitted rows were chosen on `{public_text(report.selection_split)}`"
            if report.selection_split
            else ""
        )
        source = dataset or local_dataset
        reported = public_text(report.eval_split)  # a --validation_file: its name, not the uploader's folders
        results_summary = f"Metrics on the `{reported}` split{f' of `{source}`' if source else ''}{chosen}."
        results_table = report.to_markdown()
    else:
        results_summary = (
            "No ensemble evaluation was attached to this upload; the metrics recorded at training time, if any, "
            "are in the snapshot table below."
        )
        results_table = ""
    usage, single = _snippets(manifest, repo_id or "path/to/snapshots")
    kind = "LoRA adapters on one base model" if manifest.snapshot_type == "peft_adapter" else "full models"
    return ModelCard.from_template(
        data,
        template_path=str(template or template_path()),
        title=title,
        num_snapshots=len(manifest.snapshots),
        hf_sgdr_version=manifest.library_versions.get("hf_sgdr", __version__),
        snapshot_description=f"{len(manifest.snapshots)} {kind} (`{manifest.auto_class}`)",
        task_description=f"{manifest.task or 'unspecified'} ({task_type})",
        dataset=dataset,
        local_dataset=local_dataset,
        dataset_config=config,
        schedule_summary=params or "No schedule was recorded in the manifest.",
        schedule_table=cycles,
        plot_file=PLOT_NAME if has_plot else None,
        results_summary=results_summary,
        results_table=results_table,
        usage_snippet=usage,
        single_snapshot_snippet=single,
        peft=manifest.snapshot_type == "peft_adapter",
        snapshot_table=snapshot_table(manifest),
        first_snapshot=manifest.snapshots[0].name if manifest.snapshots else snapshot_name(0),
        last_snapshot=manifest.snapshots[-1].name if manifest.snapshots else snapshot_name(0),
    )


def card_files(
    manifest: SnapshotManifest,
    *,
    report: EvaluationReport | None = None,
    repo_id: str | None = None,
    dataset: str | None = None,
) -> dict[str, bytes]:
    """A fresh model card (README.md) and, where it can be drawn, the schedule plot, as file contents for a push."""
    import tempfile

    files = {}
    with tempfile.TemporaryDirectory(prefix="hf_sgdr-plot-") as scratch:
        plot = Path(scratch) / PLOT_NAME
        if write_schedule_plot(manifest, plot):
            files[PLOT_NAME] = plot.read_bytes()
    card = build_card(manifest, report=report, repo_id=repo_id, dataset=dataset, has_plot=PLOT_NAME in files)
    return {CARD_NAME: str(card).encode("utf-8"), **files}
