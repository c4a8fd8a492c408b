"""Pictures of a schedule: lr against step, restarts and snapshot points marked (needs matplotlib)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
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
    metric_by_snapshot: dict[int, float] | None = None,
    metric_name: str = "metric",
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Plot the lr of each param group over `num_training_steps` optimizer steps.

    Restarts are dashed vertical lines; snapshots (by default every cycle end inside the budget) are
    dots on the lr of the step that completed the cycle. `metric_by_snapshot` ({snapshot step: value})
    adds the metric of each snapshot on a second axis. With `path` the PNG is written atomically.
    """
    plt = _import_pyplot()
    steps = plotted_steps(schedule, num_training_steps)
    names = list(group_names) if group_names is not None else [f"group {i}" for i in range(len(max_lrs))]
    if len(names) != len(max_lrs):
        raise ValueError(f"group_names must have one name per max_lrs entry ({len(max_lrs)}); got {len(names)}")
    curves = list(zip(*(schedule.lrs(t, max_lrs) for t in steps), strict=True))
    marked = schedule.count_cycle_ends(num_training_steps) <= MAX_MARKED_CYCLES
    if snapshot_steps is None:
        snapshot_steps = schedule.cycle_ends(num_training_steps) if marked else []
    elif len(snapshot_steps) > MAX_MARKED_CYCLES:
        snapshot_steps = []

    figure, axis = plt.subplots(figsize=(9, 4), dpi=110)
    for name, curve in zip(names, curves, strict=True):
        axis.plot(steps, curve, linewidth=1.2, label=name if len(max_lrs) > 1 else "learning rate")
    for restart in schedule.restarts(num_training_steps - 1) if marked else []:
        axis.axvline(restart, color="grey", linestyle="--", linewidth=0.7)
    if snapshot_steps:
        lrs_at_snapshots = [schedule.lrs(max(s - 1, 0), max_lrs)[0] for s in snapshot_steps]
        axis.scatter(snapshot_steps, lrs_at_snapshots, color="crimson", zorder=3, label="snapshot")
    if schedule.warmup_steps:
        axis.axvspan(0, schedule.warmup_steps, color="orange", alpha=0.12, label="warmup")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("learning rate")
    axis.set_xlim(0, num_training_steps)
    if not marked:
        title = f"{title or _default_title(schedule)} ({schedule.count_restarts(num_training_steps - 1)} restarts)"
    axis.set_title(title or _default_title(schedule))
    if metric_by_snapshot:
        twin = axis.twinx()
        xs = sorted(metric_by_snapshot)
        twin.plot(xs, [metric_by_snapshot[x] for x in xs], color="seagreen", marker="s", label=metric_name)
        twin.set_ylabel(metric_name)
        twin.legend(loc="upper center", fontsize=8)
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    if path is not None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
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
