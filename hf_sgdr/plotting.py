"""Pictures of a schedule: lr against step, restarts and snapshot points marked (needs matplotlib)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_write_bytes
from .schedule import SGDRSchedule

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Above this many steps the curve is sampled (cycle boundaries are kept while there are at most
#: `MAX_MARKED_CYCLES` of them, so restarts stay sharp).
MAX_PLOTTED_POINTS = 20_000
#: Restart lines and snapshot dots are drawn for at most this many cycles; beyond, a picture cannot show them
#: apart, and the title says how many there are instead (so any legal schedule plots in about a second).
MAX_MARKED_CYCLES = 500
#: Points sampled when there are more cycles than that: about two per pixel of the figure's width, since a
#: longer zig-zag path only costs drawing time.
CROWDED_POINTS = 2_000


def _import_pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'hf-sgdr[plot]'") from error
    return plt


#: Picture formats `image_format` accepts (of matplotlib's: not raw pixel dumps, nor pgf, which needs LaTeX).
PICTURE_FORMATS = frozenset({"png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "webp", "tif", "tiff", "gif"})


def image_format(path: str | os.PathLike[str], what: str = "path") -> str:
    """The image format `path`'s suffix names (`lr.png`: png; `lr.svg`: svg), among those matplotlib writes; else a
    `ValueError` naming `what` and them (a picture in another format than its name says would mislead)."""
    _import_pyplot()  # matplotlib, or the one-line ImportError naming the extra
    from matplotlib.backend_bases import FigureCanvasBase

    supported = sorted(PICTURE_FORMATS & set(FigureCanvasBase.get_supported_filetypes()))
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in supported:
        raise ValueError(f"{what} {path} must end in one of {', '.join('.' + s for s in supported)}")
    return suffix


def plotted_steps(schedule: SGDRSchedule, num_training_steps: int) -> list[int]:
    """Steps at which to evaluate the curve: all of them, or a sample that keeps every boundary (a coarser one
    without the boundaries when there are more than `MAX_MARKED_CYCLES` cycles)."""
    marked = schedule.count_cycle_ends(num_training_steps) <= MAX_MARKED_CYCLES
    points = MAX_PLOTTED_POINTS if marked else CROWDED_POINTS
    if num_training_steps <= points:
        return list(range(num_training_steps))
    stride = -(-num_training_steps // points)
    steps = set(range(0, num_training_steps, stride))
    if not marked:  # a step at a varying offset in each stride, so that short cycles do not alias into a flat line
        steps.update(min(start + (start // stride * 7919) % stride, num_training_steps - 1) for start in steps.copy())
    if marked:
        for end in schedule.cycle_ends(num_training_steps):
            steps.update(s for s in (end - 1, end) if s < num_training_steps)
    steps.add(num_training_steps - 1)
    return sorted(steps)


def plot_schedule(
    schedule: SGDRSchedule,
    num_training_steps: int,
    max_lrs: Sequence[float] = (1.0,),
    *,
    snapshot_steps: Sequence[int] | None = None,
    group_names: Sequence[str] | None = None,
    metrics_by_snapshot: Mapping[str, Mapping[int, float]] | None = None,
    metric_by_snapshot: Mapping[int, float] | None = None,
    metric_name: str = "metric",
    ensemble_metrics: Mapping[str, float] | None = None,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Plot the lr of each param group over `num_training_steps` optimizer steps.

    Restarts are dashed vertical lines; snapshots (by default every cycle end inside the budget) are
    dots on the lr of the step that completed the cycle. `metrics_by_snapshot` ({name: {snapshot step:
    value}}, e.g. accuracy and NLL) adds one panel per metric under the lr, on the same steps, so that no
    marker hides another; `metric_by_snapshot` with `metric_name` is the one-metric form. `ensemble_metrics`
    ({name: value}) draws the ensemble's value of a metric across its panel, for comparison with each
    snapshot's. The legend sits above the plot, off the curves. With `path` the picture is written atomically, in
    the format its suffix names (`image_format`: .png, .svg, .pdf, ...), checked before any drawing.
    """
    plt = _import_pyplot()
    file_format = image_format(path) if path is not None else None
    steps = plotted_steps(schedule, num_training_steps)
    names = list(group_names) if group_names is not None else [f"group {i}" for i in range(len(max_lrs))]
    if len(names) != len(max_lrs):
        raise ValueError(f"group_names must have one name per max_lrs entry ({len(max_lrs)}); got {len(names)}")
    metrics = {name: dict(values) for name, values in (metrics_by_snapshot or {}).items() if values}
    if metric_by_snapshot:
        metrics[metric_name] = dict(metric_by_snapshot)
    curves = list(zip(*(schedule.lrs(t, max_lrs) for t in steps), strict=True))
    marked = schedule.count_cycle_ends(num_training_steps) <= MAX_MARKED_CYCLES
    if snapshot_steps is None:
        snapshot_steps = schedule.cycle_ends(num_training_steps) if marked else []
    elif len(snapshot_steps) > MAX_MARKED_CYCLES:
        snapshot_steps = []

    figure, axes = plt.subplots(
        1 + len(metrics),
        1,
        sharex=True,
        figsize=(9, 4 + 1.6 * len(metrics)),
        dpi=110,
        height_ratios=[3] + [1.2] * len(metrics),
        layout="constrained",
        squeeze=False,
    )
    axis = axes[0][0]
    for name, curve in zip(names, curves, strict=True):
        axis.plot(steps, curve, linewidth=1.2, label=name if len(max_lrs) > 1 else "learning rate")
    restarts = list(schedule.restarts(num_training_steps - 1)) if marked else []
    for restart in restarts:
        axis.axvline(restart, color="grey", linestyle="--", linewidth=0.7)
    if snapshot_steps:
        lrs_at_snapshots = [schedule.lrs(max(s - 1, 0), max_lrs)[0] for s in snapshot_steps]
        axis.scatter(snapshot_steps, lrs_at_snapshots, color="crimson", zorder=3, clip_on=False, label="snapshot")
    if schedule.warmup_steps:
        axis.axvspan(0, schedule.warmup_steps, color="orange", alpha=0.12, label="warmup")
    axis.set_ylabel("learning rate")
    # A margin on the right so that the last snapshot (at the last step) is drawn whole.
    axis.set_xlim(0, num_training_steps * 1.02)
    if not marked:
        title = f"{title or _default_title(schedule)} ({schedule.count_restarts(num_training_steps - 1)} restarts)"
    figure.suptitle(title or _default_title(schedule))
    for (name, values), (panel,) in zip(metrics.items(), axes[1:], strict=True):
        xs = sorted(values)
        panel.plot(xs, [values[x] for x in xs], color="seagreen", marker="s", clip_on=False)
        for restart in restarts:
            panel.axvline(restart, color="grey", linestyle="--", linewidth=0.7)
        if ensemble_metrics and name in ensemble_metrics:
            panel.axhline(ensemble_metrics[name], color="purple", linestyle=":", linewidth=1.4, label="ensemble")
        panel.set_ylabel(name)
        panel.margins(y=0.15)
    axes[-1][0].set_xlabel("optimizer step")
    handles: dict[str, Any] = {}
    for row in axes:
        for handle, label in zip(*row[0].get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), loc="outside upper right", ncol=4, fontsize=8)
    if path is not None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=file_format)
        atomic_write_bytes(Path(path), buffer.getvalue())
    return figure


def _default_title(schedule: SGDRSchedule) -> str:
    if schedule.cycles is not None:
        listed = ", ".join(f"{length}x{peak:g}" for length, peak in schedule.cycles[:6])
        parts = [f"SGDR cycles (steps x peak) {listed}{', ...' if len(schedule.cycles) > 6 else ''}"]
    else:
        parts = [f"SGDR T_0={schedule.T_0}", f"T_mult={schedule.T_mult:g}"]
    if schedule.cycle_limit is not None:
        parts.append(f"{schedule.cycle_limit} cycles")
    if schedule.lr_decay != 1.0:
        parts.append(f"lr_decay={schedule.lr_decay:g}")
    return ", ".join(parts)
