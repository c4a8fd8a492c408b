"""The final ensemble report and the schedule plot in the run's tracker (TensorBoard).

Cycle events and per-snapshot metrics reach the tracker as scalars during training (`report_to`). At the
end, `log_report` adds the evaluation table (a Markdown text summary, `REPORT_TAG`) and the lr schedule
with the snapshot points and their metric (an image, `PLOT_TAG`) to the same run. `evaluate_trainer_snapshots`
(`trainer_runs`) does it through the Trainer's `TensorBoardCallback` (`report_to="tensorboard"`), the
Accelerate recipes through the `--report_to tensorboard` tracker (`--with_tracking`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..snapshot_format.manifest import SnapshotManifest
from .card import schedule_facts
from .evaluation import EvaluationReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_TAG = "sgdr/ensemble_report"
PLOT_TAG = "sgdr/lr_schedule"


def report_markdown(report: EvaluationReport) -> str:
    """The report as TensorBoard's text plugin shows it: a title line, the table, the diversity reading."""
    split = report.eval_split + (f", chosen on {report.selection_split}" if report.selection_split else "")
    reading = report.diversity_reading()
    parts = [f"**{report.kind} snapshot ensemble**, metrics on {split}", report.to_markdown()]
    return "\n\n".join([*parts, *([reading] if reading else [])])


def schedule_figure(
    manifest: SnapshotManifest, report: EvaluationReport, path: str | os.PathLike[str] | None = None
) -> Figure | None:
    """The lr schedule of the manifest with each reported snapshot, under it a panel per metric (the first
    metric and NLL where reported) with the ensemble of all snapshots drawn across; None without a schedule.
    With `path` the picture is written atomically, in the format its suffix names (`plot_schedule`)."""
    from ..plotting import plot_schedule

    facts = schedule_facts(manifest)
    if facts is None:
        return None
    schedule, budget, peak = facts
    shown = list(dict.fromkeys(name for name in (report.metrics[0], "nll") if name in report.metrics))
    rows = {row.name: row for row in report.rows_of("snapshot")}
    steps = {r.name: r.scheduler_step for r in manifest.snapshots if r.name in rows}
    full = [row for row in report.rows_of("ensemble") if len(row.members) == report.num_members > 1]
    label = {name: f"{report.eval_split} {name}" for name in shown}
    return plot_schedule(
        schedule,
        budget,
        [peak or 1.0],
        snapshot_steps=sorted(steps.values()),
        metrics_by_snapshot={
            label[name]: {step: rows[snapshot].metrics[name] for snapshot, step in steps.items()} for name in shown
        },
        ensemble_metrics={label[name]: full[-1].metrics[name] for name in shown} if full else None,
        path=path,
    )


def log_report(writer: Any, report: EvaluationReport, figure: Figure | None, step: int) -> None:
    """Add the report (text) and `figure` (image, closed afterwards) to a TensorBoard `SummaryWriter` at `step`."""
    writer.add_text(REPORT_TAG, report_markdown(report), step)
    if figure is not None:
        writer.add_figure(PLOT_TAG, figure, step, close=True)
    writer.flush()


def log_report_to_trainer(trainer: Any, snapshot_dir: Path, report: EvaluationReport) -> bool:
    """Add the report and the plot of `snapshot_dir`'s schedule to the run of `trainer`'s `TensorBoardCallback`
    (`report_to="tensorboard"`); False when it has none."""
    from transformers.integrations import TensorBoardCallback

    callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)), None)
    if callback is None or (callback.tb_writer is None and callback.logging_dir is None):
        return False
    writer = callback.tb_writer
    if writer is None:  # closed at the end of train(): a new event file in the same run folder
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=callback.logging_dir)
    figure = schedule_figure(SnapshotManifest.load(snapshot_dir), report)
    log_report(writer, report, figure, trainer.state.global_step)
    if writer is not callback.tb_writer:
        writer.close()
    return True
