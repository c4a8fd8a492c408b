"""The ensemble report: every snapshot alone, the last-k ensembles, the soups, and the validation-chosen ones.

Rows chosen with a validation split (greedy soup, greedy ensemble selection, fitted weights) are chosen
on `selection` only and reported on `eval`, which must be a different split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_json
from .combine import combine, fit_weights
from .metrics import compute_metrics
from .outputs import Batches, collect_member_outputs, soup_outputs
from .runners import Runner
from .soups import greedy_ensemble_selection, greedy_soup

ROW_KINDS = ("snapshot", "ensemble", "uniform_soup", "greedy_soup", "greedy_ensemble", "weighted_ensemble")


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
        """Read a report written by `save_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        header = ["name", "members", "forward passes", *self.metrics]
        body = []
        for row in self.rows:
            members = ", ".join(row.members) if len(row.members) <= 3 else f"{len(row.members)} snapshots"
            body.append([row.name, members, str(row.forward_passes), *(f"{row.metrics[m]:.4f}" for m in self.metrics)])
        return header, body

    def to_table(self) -> str:
        """A fixed-width text table, one row per way of using the snapshots."""
        header, body = self._cells()
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *body]
        ]
        split = f"{self.eval_split}" + (f", chosen on {self.selection_split}" if self.selection_split else "")
        return "\n".join([f"{self.kind} snapshot ensemble, metrics on {split}", *lines])

    def to_markdown(self) -> str:
        """The same table in Markdown (for the model card)."""
        header, body = self._cells()
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(line) + " |" for line in body]
        return "\n".join(lines)


def _metrics(
    names: Sequence[str],
    outputs: torch.Tensor,
    labels: torch.Tensor | None,
    kind: str,
    method: str,
    weights: Sequence[float] | None = None,
) -> dict[str, float]:
    combined = combine(outputs, kind, method, weights)
    return compute_metrics(names, combined.predictions.numpy(), None if labels is None else labels.numpy())


def run_evaluation(
    runner: Runner,
    names: Sequence[str],
    kind: str,
    eval_batches: Batches,
    selection_batches: Batches | None,
    metric_names: Sequence[str],
    *,
    method: str = "average",
    soups: bool = True,
    progress: bool = True,
) -> list[ReportRow]:
    """Compute every row of the report; each member is loaded once for both splits."""
    count = len(names)
    batch_sets = [eval_batches] if selection_batches is None else [eval_batches, selection_batches]
    outputs = collect_member_outputs(runner, range(count), batch_sets, kind, progress=progress)
    eval_out, eval_labels = outputs[0], eval_batches.example_labels()
    if kind != "causal_lm" and eval_labels is None:
        raise ValueError("evaluation needs labels in the eval dataloader (a 'labels' or 'label' column)")
    rows = [
        ReportRow(name, "snapshot", [name], _metrics(metric_names, eval_out[i : i + 1], eval_labels, kind, "average"))
        for i, name in enumerate(names)
    ]
    for k in range(1, count + 1):
        metrics = _metrics(metric_names, eval_out[count - k :], eval_labels, kind, method)
        rows.append(ReportRow(f"ensemble (last {k}, {method})", "ensemble", list(names[count - k :]), metrics, k))
    if soups:
        soup = soup_outputs(runner, range(count), [eval_batches], kind, None)[0]
        metrics = _metrics(metric_names, soup.unsqueeze(0), eval_labels, kind, "average")
        rows.append(ReportRow("uniform soup", "uniform_soup", list(names), metrics))
    if selection_batches is not None:
        rows += _selected_rows(runner, names, kind, eval_batches, selection_batches, outputs, metric_names, soups)
    return rows


def _selected_rows(
    runner: Runner,
    names: Sequence[str],
    kind: str,
    eval_batches: Batches,
    selection_batches: Batches,
    outputs: list[torch.Tensor],
    metric_names: Sequence[str],
    soups: bool,
) -> list[ReportRow]:
    """The rows whose members or weights are chosen on the selection split."""
    eval_out, selection_out = outputs
    eval_labels, selection_labels = eval_batches.example_labels(), selection_batches.example_labels()
    if kind != "causal_lm" and selection_labels is None:
        raise ValueError("choosing on the selection split needs labels in the selection dataloader")
    primary = metric_names[0]
    rows = []
    if soups:
        singles = [
            _metrics([primary], selection_out[i : i + 1], selection_labels, kind, "average")[primary]
            for i in range(len(names))
        ]

        def soup_score(indices: list[int]) -> float:
            soup = soup_outputs(runner, indices, [selection_batches], kind, None)[0]
            return _metrics([primary], soup.unsqueeze(0), selection_labels, kind, "average")[primary]

        chosen, score = greedy_soup(singles, soup_score, primary)
        soup = soup_outputs(runner, chosen, [eval_batches], kind, None)[0]
        metrics = _metrics(metric_names, soup.unsqueeze(0), eval_labels, kind, "average")
        rows.append(
            ReportRow(
                "greedy soup", "greedy_soup", [names[i] for i in chosen], metrics, selection_metrics={primary: score}
            )
        )
    weights, score = greedy_ensemble_selection(selection_out, selection_labels, kind, primary)
    used = [i for i, w in enumerate(weights) if w > 0]
    metrics = _metrics(metric_names, eval_out, eval_labels, kind, "weighted", weights)
    rows.append(
        ReportRow(
            "greedy ensemble selection",
            "greedy_ensemble",
            [names[i] for i in used],
            metrics,
            len(used),
            weights,
            {primary: score},
        )
    )
    fitted = fit_weights(selection_out, selection_labels, kind)
    metrics = _metrics(metric_names, eval_out, eval_labels, kind, "weighted", fitted)
    selection_score = _metrics([primary], selection_out, selection_labels, kind, "weighted", fitted)
    rows.append(
        ReportRow(
            "weighted ensemble (fitted)", "weighted_ensemble", list(names), metrics, len(names), fitted, selection_score
        )
    )
    return rows
