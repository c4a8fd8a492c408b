"""What the staged multi-epoch benchmarks share (`glue_multi_epoch.py`, `lm_multi_epoch.py`).

Both train every (seed, schedule) first, then, once every run is trained, read the reported split (a holdout
or a test part) and evaluate every run on it; both summarise the same rows of each run's report over seeds and
add the deep-ensemble anchor. What differs (the data, the model, the metrics, the tables' text) stays in each
script; the stage bookkeeping, the rows and the summary live here.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hf_sgdr.atomic import atomic_write_json
from hf_sgdr.snapshots import EvaluationReport, SnapshotEnsemble

#: A report row of one run, found in its `EvaluationReport`.
RowPicker = Callable[[EvaluationReport], Any]


def finished_runs(
    seeds: Sequence[int], schedules: Sequence[str], load_run: Callable[[str, int], dict[str, Any] | None], partial: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every finished run's results and the names of those not trained yet. The report stage reads the reported
    split only once every run is trained: unless `partial`, a missing run stops it, naming what is missing."""
    runs, missing = [], []
    for seed in seeds:
        for name in schedules:
            run = load_run(name, seed)
            if run is None:
                missing.append(f"{name}-seed{seed}")
            else:
                runs.append(run)
    if missing and not partial:
        raise SystemExit(
            f"the report stage needs every run trained first; missing: {', '.join(missing)} (or --partial to report "
            "the runs there are, naming the missing ones)"
        )
    if not runs:
        raise SystemExit("no finished run to report")
    return runs, missing


def is_current_report(path: Path, version: int) -> bool:
    """A report file of this `version` is there; an older one is recomputed (the snapshots are kept)."""
    return path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("version") == version


def evaluation(
    reported: Any, validation: Any, metrics: Sequence[str], split_name: str, *, soups: bool = True
) -> Callable[[SnapshotEnsemble], EvaluationReport]:
    """How every ensemble is evaluated: on the reported split, with everything chosen (best snapshot, greedy
    soup and selection) and fitted (weights, temperatures) on validation, by NLL."""

    def evaluate(ensemble: SnapshotEnsemble) -> EvaluationReport:
        return ensemble.evaluate(
            reported,
            validation,
            metrics=list(metrics),
            soups=soups,
            eval_split=split_name,
            selection_split="validation",
            selection_metric="nll",
            temperature_scaling=True,
        )

    return evaluate


def report_runs(
    runs: list[dict[str, Any]],
    folder_of: Callable[[dict[str, Any]], Path],
    split: str,
    version: int,
    evaluate: Callable[[SnapshotEnsemble], EvaluationReport],
    after_each: Callable[[], None],
) -> None:
    """Evaluate every run's snapshots on the reported split, once: each report is written to RUN/`split`.json
    as it is done, and a current one is read back instead. Sets `run[split]` and `run[split + "_eval_wall_s"]`."""
    for run in tqdm(runs, desc=f"final report ({split})", unit="run"):
        path = folder_of(run) / f"{split}.json"
        if not is_current_report(path, version):
            tick = time.perf_counter()
            ensemble = SnapshotEnsemble.from_pretrained(run["snapshot_dir"], progress=False, device="cpu")
            report = evaluate(ensemble)
            atomic_write_json(
                path, {"report": report.to_dict(), "wall_s": time.perf_counter() - tick, "version": version}
            )
            after_each()
        saved = json.loads(path.read_text(encoding="utf-8"))
        run[split], run[f"{split}_eval_wall_s"] = saved["report"], saved["wall_s"]


def row_pickers(count: int, tempered_ensemble: str) -> list[tuple[str, RowPicker]]:
    """(label, how to find the row in a run's report) for the summary's rows, `count` snapshots per run.

    `tempered_ensemble`: how the report names its temperature-scaled ensembles ("temperature-scaled" for
    classification, "members temperature-scaled" for a causal LM, whose members are tempered alike).
    """

    def tempered(name: str) -> str:
        return f"{name} (temperature-scaled)"

    return [
        ("final model", lambda r: r.rows_of("snapshot")[-1]),
        ("final model, temperature-scaled", lambda r: r.row(tempered(r.rows_of("snapshot")[-1].name))),
        ("best snapshot (validation NLL)", lambda r: r.rows_of("best_snapshot")[0]),
        ("best snapshot, temperature-scaled", lambda r: r.row(tempered(r.rows_of("best_snapshot")[0].members[0]))),
        ("ensemble, all", lambda r: r.row(f"ensemble (last {count}, average)")),
        (
            f"ensemble, all, {tempered_ensemble}",
            lambda r: r.row(f"ensemble (last {count}, average, {tempered_ensemble})"),
        ),
        ("ensemble, last 3", lambda r: r.row(f"ensemble (last {min(3, count)}, average)")),
        ("uniform soup", lambda r: r.rows_of("uniform_soup")[0]),
        ("greedy soup (validation NLL)", lambda r: r.rows_of("greedy_soup")[0]),
        ("greedy selection (validation NLL)", lambda r: r.rows_of("greedy_ensemble")[0]),
    ]


def _entry(schedule: str, label: str, rows: list[Any], split: str, metrics: Sequence[str]) -> dict[str, Any]:
    """One summary row: each seed's metrics on `split`, members, disagreement and NLL gain over the mean member."""
    diversity = [row.diversity or {} for row in rows]
    return {
        "schedule": schedule,
        "row": label,
        "seeds": len(rows),
        split: {m: [row.metrics[m] for row in rows] for m in metrics},
        "members": [row.members for row in rows],
        "disagreement": [d.get("disagreement") for d in diversity],
        "gain_over_mean_member_nll": [(d.get("gain") or {}).get("nll") for d in diversity],
    }


def summarize(
    runs: list[dict[str, Any]],
    schedules: Sequence[str],
    anchor: dict[str, Any] | None,
    *,
    split: str,
    metrics: Sequence[str],
    tempered_ensemble: str,
) -> list[dict[str, Any]]:
    """Each (schedule, row) over seeds on the reported `split` (the key of each run's report), with the
    validation values where the row has them (rows chosen on validation have none), then the anchor's rows."""
    out = []
    for schedule in schedules:
        group = [run for run in runs if run["schedule"] == schedule]
        reports = [EvaluationReport.from_dict(run[split]) for run in group]
        validation = [EvaluationReport.from_dict(run["validation"]) for run in group]
        for label, pick in row_pickers(reports[0].num_members, tempered_ensemble):
            entry = _entry(schedule, label, [pick(report) for report in reports], split, metrics)
            with contextlib.suppress(KeyError, IndexError):  # chosen on validation, or fitted there: no value
                entry["validation"] = {m: [pick(report).metrics[m] for report in validation] for m in metrics}
            out.append(entry)
    if anchor is not None:
        report = EvaluationReport.from_dict(anchor["report"])
        k = report.num_members
        for label, name in (
            (f"deep ensemble of {k} cosine runs ({k}x compute)", f"ensemble (last {k}, average)"),
            (f"deep ensemble of {k}, {tempered_ensemble}", f"ensemble (last {k}, average, {tempered_ensemble})"),
        ):
            out.append(_entry("anchor", label, [report.row(name)], split, metrics))
    return out


def deep_ensemble(
    runs: list[dict[str, Any]],
    path: Path,
    version: int,
    make_ensemble: Callable[[], SnapshotEnsemble],
    load_final_model: Callable[[Path], Any],
    evaluate: Callable[[SnapshotEnsemble], EvaluationReport],
) -> dict[str, Any] | None:
    """The seeds' final cosine models as one ensemble (K independent runs: K times the training compute),
    evaluated once and kept in `path`; None with fewer than two cosine seeds."""
    finals = [run for run in runs if run["schedule"] == "cosine"]
    if len(finals) < 2:
        return None
    if not is_current_report(path, version):
        ensemble = make_ensemble()
        for run in finals:
            last = SnapshotEnsemble.from_pretrained(run["snapshot_dir"], progress=False).snapshot_names[-1]
            ensemble.add_model(load_final_model(Path(run["snapshot_dir"]) / last), name=f"cosine-seed{run['seed']}")
        report = evaluate(ensemble)
        seeds = [run["seed"] for run in finals]
        atomic_write_json(path, {"report": report.to_dict(), "seeds": seeds, "version": version})
    return json.loads(path.read_text(encoding="utf-8"))


def per_snapshot(run: dict[str, Any]) -> dict[str, Any]:
    """A run's validation report in the shape `_common.plot_per_snapshot` reads: each snapshot, its step and
    the ensemble of all."""
    parsed = EvaluationReport.from_dict(run["validation"])
    return {
        "snapshots": [row.metrics for row in parsed.rows_of("snapshot")],
        "snapshot_steps": run["snapshot_steps"],
        "ensemble_all": parsed.rows_of("ensemble")[-1].metrics,
    }
