"""The ensemble report: every snapshot alone, the last-k ensembles, the soups, and the validation-chosen ones.

Rows chosen with a validation split (the best single snapshot, greedy soup, greedy ensemble selection,
fitted weights, temperatures) are chosen on `selection` only and reported on `eval`, which must be a
different split. Every ensemble row carries a diversity report: how often its members disagree and what it
gains over its average member, the two numbers that say whether more snapshots can help.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_json
from .combine import combine, fit_weights
from .metric_suite import MetricSuite
from .metrics import METRICS, higher_is_better
from .outputs import Batches, collect_member_outputs, soup_outputs
from .runners import Runner
from .soups import greedy_ensemble_selection, greedy_soup, rank_members
from .tasks.base import ScaleFit, TaskKind

ROW_KINDS = (
    "snapshot",
    "ensemble",
    "uniform_soup",
    "best_snapshot",
    "greedy_soup",
    "greedy_ensemble",
    "weighted_ensemble",
    "temperature_scaled",
)
logger = logging.getLogger(__name__)

#: Below this pairwise disagreement rate the members are near copies of each other.
LOW_DISAGREEMENT = 0.01


@dataclass
class ReportRow:
    """One way of using the snapshots, and its metrics on the reported split."""

    name: str
    kind: str
    members: list[str]
    metrics: dict[str, float]
    forward_passes: int = 1
    weights: list[float] | None = None
    selection_metrics: dict[str, float] | None = None
    temperature: float | None = None
    diversity: dict[str, Any] | None = None


@dataclass
class EvaluationReport:
    """What `SnapshotEnsemble.evaluate` returns; prints as a table, saves as JSON, feeds the model card."""

    kind: str
    method: str
    metrics: list[str]
    eval_split: str
    selection_split: str | None = None
    task: str | None = None
    dataset: str | None = None
    num_eval_items: int = 0
    resident_models_peak: int = 0
    rows: list[ReportRow] = field(default_factory=list)

    def row(self, name: str) -> ReportRow:
        """The row called `name` (KeyError listing the names otherwise)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row {name!r}; rows: {[r.name for r in self.rows]}")

    def rows_of(self, kind: str) -> list[ReportRow]:
        """The rows of one kind (see `ROW_KINDS`)."""
        return [row for row in self.rows if row.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        """Inverse of `to_dict` (e.g. a report saved by `hf-sgdr evaluate --output_json`)."""
        rows = [ReportRow(**row) for row in data.get("rows", [])]
        return cls(**{**data, "rows": rows})

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as JSON atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | os.PathLike[str]) -> EvaluationReport:
        """Read a report written by `save_json`: `FileNotFoundError` for a missing file, `ValueError` for a file that is
        not such a report, each naming `path`."""
        path = Path(path)
        written_by = "a report written by `hf-sgdr evaluate --output_json` or EvaluationReport.save_json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not a file; give {written_by}")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError, AttributeError) as error:  # undecodable, not JSON, not its shape
            raise ValueError(f"{path} is not {written_by} ({type(error).__name__}: {error})") from None

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        disagreement = any((row.diversity or {}).get("disagreement") is not None for row in self.rows)
        temperature = any(row.temperature is not None for row in self.rows)
        header = ["name", "members", "forward passes", *self.metrics]
        header += [*(["disagreement"] if disagreement else []), *(["temperature"] if temperature else [])]
        body = []
        for row in self.rows:
            members = ", ".join(row.members) if len(row.members) <= 3 else f"{len(row.members)} snapshots"
            if row.weights is not None:  # one weight per snapshot, in snapshot order
                members += " (weights " + "/".join(f"{w:.2f}" for w in row.weights) + ")"
            cells = [row.name, members, str(row.forward_passes), *(f"{row.metrics[m]:.4f}" for m in self.metrics)]
            if disagreement:
                rate = (row.diversity or {}).get("disagreement")
                cells.append("" if rate is None else f"{100 * rate:.1f} %")
            if temperature:
                cells.append("" if row.temperature is None else f"{row.temperature:.3g}")
            body.append(cells)
        return header, body

    def diversity_reading(self) -> str | None:
        """One line on the ensemble of all snapshots: do its members differ enough for an ensemble gain?"""
        full = [row for row in self.rows_of("ensemble") if row.diversity and len(row.members) == self.num_members]
        if not full or self.num_members < 2:
            return None
        diversity = full[-1].diversity
        # A mean member perplexity is an average of exponentials: read the NLL instead.
        metric = "nll" if self.metrics[0] == "perplexity" and "nll" in diversity["gain"] else self.metrics[0]
        gain = diversity["gain"].get(metric)
        rate = diversity.get("disagreement")
        direction = "better" if gain is not None and gain * (1 if higher_is_better(metric) else -1) > 0 else "no better"
        gain_text = f"the ensemble's {metric} is {_signed(gain)} against its mean member ({direction})"
        if "nll" in diversity["gain"] and metric != "nll":
            gain_text += f", NLL {_signed(diversity['gain']['nll'])}"
        if rate is None:
            return f"{gain_text}."
        if rate < LOW_DISAGREEMENT:
            return (
                f"members agree on {100 * (1 - rate):.1f} % of inputs: more cycles or a higher restart peak would be "
                f"needed for an ensemble gain ({gain_text})."
            )
        return f"members disagree on {100 * rate:.1f} % of inputs (mean over pairs); {gain_text}."

    @property
    def num_members(self) -> int:
        """Number of snapshots in the report."""
        return len(self.rows_of("snapshot"))

    def to_table(self) -> str:
        """A fixed-width text table, one row per way of using the snapshots."""
        header, body = self._cells()
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *body]
        ]
        split = f"{self.eval_split}" + (f", chosen on {self.selection_split}" if self.selection_split else "")
        reading = self.diversity_reading()
        return "\n".join(
            [f"{self.kind} snapshot ensemble, metrics on {split}", *lines, *([reading] if reading else [])]
        )

    def to_markdown(self) -> str:
        """The same table in Markdown (for the model card)."""
        header, body = self._cells()
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(line) + " |" for line in body]
        return "\n".join(lines)


def _signed(value: float | None) -> str:
    """A signed difference, with its digits even when it is tiny (never a bare -0.0000)."""
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if value == 0 or abs(value) >= 1e-4 else f"{value:+.1e}"


def _metrics(
    suite: MetricSuite,
    outputs: torch.Tensor,
    labels: torch.Tensor | None,
    kind: TaskKind,
    method: str,
    weights: Sequence[float] | None = None,
    only: str | None = None,
) -> dict[str, float]:
    return suite.compute(combine(outputs, kind, method, weights), labels, only)


def _diversity(
    member_outputs: torch.Tensor,
    members: Sequence[dict[str, float]],
    kind: TaskKind,
    ensemble: dict[str, float],
) -> dict[str, Any]:
    """The members' pairwise disagreement (`TaskKind.disagreement`), their mean metrics (`members`: each member's
    own, from its snapshot row) and the ensemble's gain over them (ensemble minus mean member, in each metric's
    own units)."""
    names = list(ensemble)
    mean_member = {name: float(sum(m[name] for m in members) / len(members)) for name in names}
    return {
        "disagreement": kind.disagreement(member_outputs),
        "mean_member": mean_member,
        "gain": {name: ensemble[name] - mean_member[name] for name in names},
    }


def run_evaluation(
    runner: Runner,
    names: Sequence[str],
    kind: TaskKind,
    eval_batches: Batches,
    selection_batches: Batches | None,
    suite: MetricSuite,
    *,
    method: str = "average",
    soups: bool = True,
    selection_metric: str | None = None,
    temperature_scaling: bool = False,
    progress: bool = True,
) -> list[ReportRow]:
    """Compute every row of the report; each member is loaded once for both splits.

    `selection_metric` (default: the first key `suite` reports) is what the validation-chosen rows optimise;
    `temperature_scaling` adds temperature-scaled rows (classification or causal LM, fitted on the selection
    split).
    """
    count = len(names)
    if temperature_scaling and not kind.scales_temperature:
        raise ValueError(
            f"temperature_scaling needs classification or causal-LM outputs; this ensemble's kind is {kind.name}"
        )
    if temperature_scaling and selection_batches is None:
        raise ValueError(
            "temperature_scaling fits each temperature on a selection split: pass selection_dataloader (data the "
            "run did not train on), or leave temperature_scaling off"
        )
    batch_sets = [eval_batches] if selection_batches is None else [eval_batches, selection_batches]
    temperatures = kind.scaling_temperatures if temperature_scaling else None
    outputs = collect_member_outputs(
        runner, range(count), batch_sets, kind, progress=progress, temperatures=temperatures
    )
    scaled_from = outputs
    if temperatures is not None:  # every row but the temperature-scaled ones reads the T = 1 column
        outputs = [grid[..., temperatures.index(1.0)].contiguous() for grid in outputs]
    eval_out, eval_labels = outputs[0], eval_batches.targets(kind)
    if kind.needs_labels and eval_labels is None:
        raise ValueError("evaluation needs labels in the eval dataloader (a 'labels' or 'label' column)")
    rows = [
        ReportRow(name, "snapshot", [name], _metrics(suite, eval_out[i : i + 1], eval_labels, kind, "average"))
        for i, name in enumerate(names)
    ]
    for k in range(1, count + 1):
        members = eval_out[count - k :]
        metrics = _metrics(suite, members, eval_labels, kind, method)
        row = ReportRow(f"ensemble (last {k}, {method})", "ensemble", list(names[count - k :]), metrics, k)
        if k > 1:
            member_metrics = [r.metrics for r in rows[count - k : count]]
            row.diversity = _diversity(members, member_metrics, kind, metrics)
        rows.append(row)
    if soups:
        soup = soup_outputs(runner, range(count), [eval_batches], kind, None)[0]
        metrics = _metrics(suite, soup.unsqueeze(0), eval_labels, kind, "average")
        rows.append(ReportRow("uniform soup", "uniform_soup", list(names), metrics))
    if selection_batches is not None:
        selection_metric = selection_metric or suite.keys[0]
        if selection_metric not in suite.keys and selection_metric not in METRICS:
            accepted = ", ".join(dict.fromkeys([*suite.keys, *METRICS]))
            raise ValueError(f"unknown selection_metric {selection_metric!r}; accepted: {accepted}")
        rows += _selected_rows(
            runner, names, kind, eval_batches, selection_batches, outputs, suite, soups, selection_metric
        )
        if temperature_scaling:
            fit = kind.temperature_fit(scaled_from, selection_batches.targets(kind))
            rows += _temperature_rows(names, kind, eval_labels, suite, method, fit)
    return rows


def _selected_rows(
    runner: Runner,
    names: Sequence[str],
    kind: TaskKind,
    eval_batches: Batches,
    selection_batches: Batches,
    outputs: list[torch.Tensor],
    suite: MetricSuite,
    soups: bool,
    primary: str,
) -> list[ReportRow]:
    """The rows whose members or weights are chosen on the selection split (by the metric `primary`)."""
    eval_out, selection_out = outputs
    eval_labels, selection_labels = eval_batches.targets(kind), selection_batches.targets(kind)
    if kind.needs_labels and selection_labels is None:
        raise ValueError("choosing on the selection split needs labels in the selection dataloader")
    singles = [
        _metrics(suite, selection_out[i : i + 1], selection_labels, kind, "average", only=primary)[primary]
        for i in range(len(names))
    ]
    best = rank_members(singles, primary)[0]
    rows = [
        ReportRow(
            "best snapshot (chosen on selection)",
            "best_snapshot",
            [names[best]],
            _metrics(suite, eval_out[best : best + 1], eval_labels, kind, "average"),
            selection_metrics={primary: singles[best]},
        )
    ]
    if soups:

        def soup_score(indices: list[int]) -> float:
            soup = soup_outputs(runner, indices, [selection_batches], kind, None)[0]
            return _metrics(suite, soup.unsqueeze(0), selection_labels, kind, "average", only=primary)[primary]

        chosen, score = greedy_soup(singles, soup_score, primary)
        soup = soup_outputs(runner, chosen, [eval_batches], kind, None)[0]
        metrics = _metrics(suite, soup.unsqueeze(0), eval_labels, kind, "average")
        rows.append(
            ReportRow(
                "greedy soup", "greedy_soup", [names[i] for i in chosen], metrics, selection_metrics={primary: score}
            )
        )
    weights, score = greedy_ensemble_selection(
        selection_out,
        selection_labels,
        kind,
        primary,
        scorer=lambda combined: suite.compute(combined, selection_labels, primary)[primary],
    )
    used = _members_used(names, weights)
    metrics = _metrics(suite, eval_out, eval_labels, kind, "weighted", weights)
    rows.append(
        ReportRow(
            "greedy ensemble selection",
            "greedy_ensemble",
            used,
            metrics,
            len(used),
            weights,
            {primary: score},
        )
    )
    fitted = fit_weights(selection_out, selection_labels, kind)
    used = _members_used(names, fitted)
    metrics = _metrics(suite, eval_out, eval_labels, kind, "weighted", fitted)
    selection_score = _metrics(suite, selection_out, selection_labels, kind, "weighted", fitted, primary)
    rows.append(
        ReportRow("weighted ensemble (fitted)", "weighted_ensemble", used, metrics, len(used), fitted, selection_score)
    )
    return rows


def _members_used(names: Sequence[str], weights: Sequence[float]) -> list[str]:
    """The members a weighted row runs: those with a weight above 0 (each costs a forward pass)."""
    return [name for name, weight in zip(names, weights, strict=True) if weight > 0]


def _temperature_rows(
    names: Sequence[str],
    kind: TaskKind,
    eval_labels: torch.Tensor | None,
    suite: MetricSuite,
    method: str,
    fit: ScaleFit,
) -> list[ReportRow]:
    """Every snapshot and every last-k ensemble with one temperature each, fitted on the selection split (for a
    causal LM, an ensemble mixes its members tempered alike: see `calibration`)."""
    count = len(names)
    candidates = [(f"{name} (temperature-scaled)", [i], "average") for i, name in enumerate(names)]
    candidates += [
        (f"ensemble (last {k}, {method}, {kind.tempered_ensembles})", list(range(count - k, count)), method)
        for k in range(2, count + 1)
    ]
    rows = []
    for label, members, how in candidates:
        temperature, scaled = fit(members, how)
        _warn_at_edge(label, temperature, *kind.temperature_range)
        rows.append(
            ReportRow(
                label,
                "temperature_scaled",
                [names[i] for i in members],
                suite.compute(scaled, eval_labels),
                len(members),
                temperature=temperature,
            )
        )
    return rows


def _warn_at_edge(label: str, temperature: float, low: float, high: float) -> None:
    """A temperature at a bound of its range is not an optimum (members near uniform, or a tiny split): say so."""
    if math.isclose(temperature, low, rel_tol=1e-3) or math.isclose(temperature, high, rel_tol=1e-3):
        logger.warning(
            "%s: the fitted temperature %.3g is at the edge of its range [%.3g, %.3g] (not an optimum)",
            label,
            temperature,
            low,
            high,
        )
