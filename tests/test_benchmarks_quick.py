"""The schedule and overhead benchmarks in `--quick` mode (the short-budget counter-examples too: the staged
scripts' `--preset short_budget`): each runs end to end in a subprocess (as a user would start it) and the results
files it writes are checked: every row present, metrics finite and in range, snapshot steps where the schedules
put them, the holdout (or test part) read only in the final-report stage.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hf_sgdr.snapshots.calibration import LM_TEMPERATURE_GRID

pytestmark = pytest.mark.benchmark

REPO = Path(__file__).resolve().parents[1]


def run_quick(name: str, results_dir: Path, *flags: str, script: str | None = None) -> tuple[dict[str, Any], str]:
    """Run `benchmarks/<script>.py --quick` (default script: `name`) writing into `results_dir`; return the JSON
    and Markdown it wrote (`<name>_quick.{json,md}`)."""
    command = [
        sys.executable, str(REPO / "benchmarks" / f"{script or name}.py"), "--quick", "--results_dir",
        str(results_dir), *flags
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    payload = json.loads((results_dir / f"{name}_quick.json").read_text(encoding="utf-8"))
    markdown = (results_dir / f"{name}_quick.md").read_text(encoding="utf-8")
    return payload, markdown


def finite(value: float) -> bool:
    return isinstance(value, float | int) and math.isfinite(value)


def check_plots(payload: dict[str, Any]) -> None:
    assert payload["plots"]
    for plot in map(Path, payload["plots"]):
        assert plot.suffix == ".png" and plot.stat().st_size > 1000
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def benchmark_module(name: str) -> ModuleType:
    """`benchmarks/<name>.py` imported as its scripts import each other (`benchmarks/` on `sys.path`)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def check_short_rows(payload: dict[str, Any], split: str, metric: str, low: float, high: float) -> None:
    """The rows of BENCHMARKS.md's short-budget table, read from a `--preset short_budget` run as
    `summarize.py` reads them: every seed's value, in range."""
    summarize = benchmark_module("summarize")
    for schedule in payload["config"]["schedules"]:
        for row in summarize.SHORT_ROWS:
            values = summarize._short_values(payload, schedule, row, split, metric)
            assert len(values) == len(payload["config"]["seeds"]) and all(low < v < high for v in values)


def test_glue_short_budget_quick(tmp_path: Path, shared_data: Path) -> None:
    import pandas as pd

    defaults = benchmark_module("glue_multi_epoch").parse_args(["--preset", "short_budget", "--output_dir", "x"])
    assert (defaults.steps, defaults.train_samples, defaults.num_cycles) == (120, 4000, 4)  # half an epoch
    # Tests never read the real holdout: a stand-in of the same format (SST-2 train rows; the test checks the
    # mechanism, not the accuracy) shows that the final-report stage is the only one that reads it.
    stand_in = tmp_path / "holdout_stand_in.parquet"
    pd.read_parquet(shared_data / "glue" / "sst2" / "train.parquet").iloc[-200:].to_parquet(stand_in)
    flags = ("--preset", "short_budget", "--holdout_file", str(stand_in), "--output_dir", str(tmp_path / "runs"))
    payload, markdown = run_quick("glue_schedules", tmp_path, *flags, script="glue_multi_epoch")
    config = payload["config"]
    assert config["schedules"] == ["cosine", "sgdr_tmult2"] and config["seeds"] == [0, 1]
    assert config["steps"] == 8 and config["train_samples"] == 96  # 12 steps of 8 make an epoch
    runs = {(run["schedule"], run["seed"]): run for run in payload["runs"]}
    # Stock schedules: snapshots at equal intervals; SGDR: at its cycle ends, the last one on the final step.
    assert runs[("cosine", 0)]["snapshot_steps"] == [3, 5, 8]
    sgdr_steps = runs[("sgdr_tmult2", 0)]["snapshot_steps"]
    assert len(sgdr_steps) == 3 and sgdr_steps[-1] == 8 and sgdr_steps == sorted(set(sgdr_steps))
    for run in runs.values():
        assert len(run["lr"]) == 8 and all(0 <= lr <= config["learning_rate"] * (1 + 1e-9) for lr in run["lr"])
    assert payload["holdout"]["stage"] == "final_report" and payload["num_holdout"] == 32
    assert payload["holdout"]["read_at"] >= payload["training_finished_at"]
    check_short_rows(payload, "holdout", "accuracy", -1e-9, 1 + 1e-9)
    assert "# SST-2, under one epoch: the counter-example" in markdown
    assert "0.667 epochs of 96 SST-2 train sentences" in markdown and "| sgdr_tmult2 | uniform soup |" in markdown
    check_plots(payload)


def test_lm_short_budget_quick(tmp_path: Path) -> None:
    lm = benchmark_module("lm_multi_epoch")
    defaults = lm.parse_args(["--preset", "short_budget", "--output_dir", "x"])
    lm.set_budget(defaults, "x" * 128_000)
    assert (defaults.train_chars, defaults.train_blocks, defaults.steps) == (None, 1000, 300)  # the whole part
    flags = ("--preset", "short_budget", "--output_dir", str(tmp_path / "runs"))
    payload, markdown = run_quick("lm_schedules", tmp_path, *flags, script="lm_multi_epoch")
    config, vocab = payload["config"], payload["vocab_size"]
    assert config["schedules"] == ["cosine", "sgdr_tmult2"] and config["steps"] == 12
    assert payload["num_blocks"]["train"] == 128  # 16 steps of 8 blocks make an epoch
    for run in payload["runs"]:
        assert len(run["lr"]) == 12 and len(run["snapshot_steps"]) == 3 and run["snapshot_steps"][-1] == 12
        assert run["loss"] and all(finite(loss) for _, loss in run["loss"])
    assert payload["test"]["read_at"] >= payload["training_finished_at"]
    check_short_rows(payload, "test", "perplexity", 1.0, 2 * vocab)
    assert "from scratch under one epoch: the counter-example" in markdown
    assert "8,192 characters of the train part (128 blocks of 64) for 0.75 epochs = 12 optimizer steps" in markdown
    check_plots(payload)


def test_overhead_quick(tmp_path: Path) -> None:
    payload, markdown = run_quick("overhead", tmp_path)
    config, training, evaluation = payload["config"], payload["training"], payload["evaluation"]
    for kind in ("cosine", "sgdr"):
        assert len(training["runs"][kind]) == config["repeats"]
        assert all(r["wall_s"] > 0 and r["thread_cpu_s"] > 0 for r in training["runs"][kind])
    for metric in ("wall_s", "thread_cpu_s"):
        assert finite(training[metric]["overhead_pct"]) and len(training[metric]["pair_overheads_pct"]) == 1
    assert training["callback_s_per_run"] > 0 and training["writer_s_per_snapshot"] > 0
    (pair,) = training["attributable"]
    assert pair["attributable_s"] == pytest.approx(pair["snapshot_windows_s"] + pair["tail_s"] + pair["callback_s"])
    assert finite(training["attributable_pct_median"]) and "Attributable to SGDR" in markdown
    summary = evaluation["summary"]
    assert set(summary) == {"ensemble", "reference"}
    assert summary["reference"]["x_reference_wall_median"] == pytest.approx(1.0)
    assert 1 <= summary["ensemble"]["resident"] <= 2
    for values in summary.values():
        assert values["wall_median"] > 0 and 0.0 <= values["accuracy"] <= 1.0
    assert "SnapshotEnsemble.evaluate" in markdown and "x reference" in markdown


def test_glue_multi_epoch_quick_resumes_and_reads_the_holdout_last(tmp_path: Path, shared_data: Path) -> None:
    import pandas as pd

    stand_in = tmp_path / "holdout_stand_in.parquet"  # never the real holdout in a test (see above)
    pd.read_parquet(shared_data / "glue" / "sst2" / "train.parquet").iloc[-200:].to_parquet(stand_in)
    runs_dir = tmp_path / "runs"
    flags = ("--holdout_file", str(stand_in), "--output_dir", str(runs_dir))
    # The report stage refuses to read the holdout before every run is trained.
    early = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "glue_multi_epoch.py"), "--quick", "--stage", "report", *flags],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert early.returncode != 0 and "needs every run trained first; missing: cosine-seed0" in early.stderr
    payload, markdown = run_quick("glue_multi_epoch", tmp_path, *flags)
    config = payload["config"]
    assert config["schedules"] == ["cosine", "star"] and config["seeds"] == [0, 1] and config["steps"] == 8
    runs = {(run["schedule"], run["seed"]): run for run in payload["runs"]}
    assert runs[("cosine", 0)]["snapshot_steps"] == [2, 4, 6, 8]
    assert runs[("star", 0)]["snapshot_steps"] == [3, 5, 7, 8]  # 40 % of the budget, then 3 short cycles
    assert payload["holdout"]["stage"] == "final_report"
    assert payload["holdout"]["read_at"] >= payload["training_finished_at"]
    summary = {(e["schedule"], e["row"]): e for e in payload["summary"]}
    for schedule in ("cosine", "star"):
        for row in (
            "final model",
            "final model, temperature-scaled",
            "best snapshot (validation NLL)",
            "best snapshot, temperature-scaled",
            "ensemble, all",
            "ensemble, all, temperature-scaled",
            "greedy selection (validation NLL)",
        ):
            entry = summary[(schedule, row)]
            assert entry["seeds"] == 2
            assert all(0.0 <= v <= 1.0 for v in entry["holdout"]["accuracy"] + entry["holdout"]["ece"])
            assert all(finite(v) and v > 0 for v in entry["holdout"]["nll"] + entry["holdout"]["brier"])
        assert all(0.0 <= r <= 1.0 for r in summary[(schedule, "ensemble, all")]["disagreement"])
        assert "validation" not in summary[(schedule, "best snapshot (validation NLL)")]  # chosen on it
    anchor = summary[("anchor", "deep ensemble of 2 cosine runs (2x compute)")]
    assert len(anchor["holdout"]["nll"]) == 1
    assert len(summary[("anchor", "deep ensemble of 2, temperature-scaled")]["holdout"]["nll"]) == 1
    assert set(payload["goal"]) >= {"sgdr_row", "stock_row", "relative_nll_gain", "accuracy_points", "met"}
    assert "| star | ensemble, all |" in markdown and "holdout NLL" in markdown and "goal met" in markdown
    check_plots(payload)
    # A second start skips every finished run and every finished report.
    again = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "glue_multi_epoch.py"), "--quick", "--results_dir", str(tmp_path),
         *flags], cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert again.returncode == 0 and "train stage: 0 of 4 runs to do" in again.stderr
    assert json.loads((tmp_path / "glue_multi_epoch_quick.json").read_text())["summary"] == payload["summary"]


def test_lm_multi_epoch_quick_resumes_and_reads_the_test_part_last(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    script = str(REPO / "benchmarks" / "lm_multi_epoch.py")
    # The report stage refuses to read the test part before every run is trained.
    early = subprocess.run(
        [sys.executable, script, "--quick", "--stage", "report", "--output_dir", str(runs_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert early.returncode != 0 and "needs every run trained first; missing: cosine-seed0" in early.stderr
    payload, markdown = run_quick("lm_multi_epoch", tmp_path, "--output_dir", str(runs_dir))
    config, vocab = payload["config"], payload["vocab_size"]
    assert config["schedules"] == ["cosine", "sgdr_tmult1"] and config["seeds"] == [0, 1] and config["steps"] == 16
    runs = {(run["schedule"], run["seed"]): run for run in payload["runs"]}
    assert runs[("cosine", 0)]["snapshot_steps"] == runs[("sgdr_tmult1", 0)]["snapshot_steps"] == [4, 8, 12, 16]
    for run in runs.values():
        assert len(run["lr"]) == config["steps"]
        steps = [step for step, _ in run["validation_curve"]]
        assert steps == [4, 8, 12, 16] and all(finite(nll) and nll > 0 for _, nll in run["validation_curve"])
        assert run["validation_curve"][-1][1] < math.log(2 * vocab)  # a few large early steps may overshoot
    assert payload["test"]["stage"] == "final_report"
    assert payload["test"]["read_at"] >= payload["training_finished_at"] >= max(r["finished_at"] for r in runs.values())
    summary = {(e["schedule"], e["row"]): e for e in payload["summary"]}
    for schedule in ("cosine", "sgdr_tmult1"):
        for row in (
            "final model",
            "final model, temperature-scaled",
            "best snapshot (validation NLL)",
            "best snapshot, temperature-scaled",
            "ensemble, all",
            "ensemble, all, members temperature-scaled",
            "ensemble, last 3",
            "uniform soup",
            "greedy soup (validation NLL)",
            "greedy selection (validation NLL)",
        ):
            entry = summary[(schedule, row)]
            assert entry["seeds"] == 2
            for nll, ppl in zip(entry["test"]["nll"], entry["test"]["perplexity"], strict=True):
                assert 1.0 < ppl < 2 * vocab and math.isclose(math.log(ppl), nll, rel_tol=1e-6)
        assert "validation" not in summary[(schedule, "best snapshot (validation NLL)")]  # chosen on it
        assert "validation" not in summary[(schedule, "final model, temperature-scaled")]  # fitted on it
        assert "validation" in summary[(schedule, "ensemble, all")]
    temperatures = [
        row["temperature"]
        for run in runs.values()
        for row in run["test"]["rows"]
        if row["kind"] == "temperature_scaled"
    ]
    assert len(temperatures) == 4 * (4 + 3) and set(temperatures) <= set(LM_TEMPERATURE_GRID)
    assert len(summary[("anchor", "deep ensemble of 2 cosine runs (2x compute)")]["test"]["nll"]) == 1
    assert len(summary[("anchor", "deep ensemble of 2, members temperature-scaled")]["test"]["nll"]) == 1
    assert set(payload["regime"]) == {"cosine", "sgdr_tmult1"}
    assert "| sgdr_tmult1 | ensemble, all |" in markdown and "test NLL/char" in markdown and "Partial" not in markdown
    check_plots(payload)
    assert len(payload["plots"]) == 3
    # A test-part report of an older version (before the temperature rows) is recomputed, the others kept.
    stale, kept = runs_dir / "cosine-seed0" / "test.json", runs_dir / "cosine-seed1" / "test.json"
    old_report = json.loads(stale.read_text())
    stale.write_text(json.dumps({key: value for key, value in old_report.items() if key != "version"}))
    kept_mtime = kept.stat().st_mtime_ns
    # A second start skips every finished run and every current report.
    again = subprocess.run(
        [sys.executable, script, "--quick", "--results_dir", str(tmp_path), "--output_dir", str(runs_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert again.returncode == 0 and "train stage: 0 of 4 runs to do" in again.stderr
    assert json.loads((tmp_path / "lm_multi_epoch_quick.json").read_text())["summary"] == payload["summary"]
    assert json.loads(stale.read_text())["version"] == old_report["version"] and kept.stat().st_mtime_ns == kept_mtime
    # Other settings in the same folder are refused instead of mixed in.
    other = subprocess.run(
        [sys.executable, script, "--quick", "--learning_rate", "1e-3", "--output_dir", str(runs_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert other.returncode != 0 and "trained with other settings" in other.stderr


def test_glue_multi_epoch_rte_quick_pairs_and_a_validation_part_of_train(tmp_path: Path, shared_data: Path) -> None:
    import pandas as pd

    split_train = benchmark_module("_glue_data").split_train
    train = pd.read_parquet(shared_data / "glue" / "rte" / "train.parquet")
    validation, subset = split_train(train, 300, 400)
    assert len(validation) == 300 and len(subset) == 400 and not set(validation["idx"]) & set(subset["idx"])
    again, _ = split_train(train, 300, 400)
    assert again["idx"].tolist() == validation["idx"].tolist()  # fixed, whatever the run's seed
    # The RTE holdout is the official validation split; a test uses a stand-in of its format (RTE train rows).
    stand_in = tmp_path / "holdout_stand_in.parquet"
    train.iloc[-100:].to_parquet(stand_in)
    flags = ("--task", "rte", "--holdout_file", str(stand_in), "--output_dir", str(tmp_path / "runs"))
    payload, markdown = run_quick("glue_multi_epoch_rte", tmp_path, *flags, script="glue_multi_epoch")
    config = payload["config"]
    assert payload["task"] == config["task"] == "rte" and config["train_sampling_strategy"] == "group_by_length"
    assert config["schedules"] == ["cosine", "star"] and config["seeds"] == [0, 1] and config["steps"] == 8
    assert payload["holdout"]["path"] == str(stand_in) and payload["num_holdout"] == 16
    assert payload["holdout"]["stage"] == "final_report"
    assert payload["holdout"]["read_at"] >= payload["training_finished_at"]
    summary = {(e["schedule"], e["row"]): e for e in payload["summary"]}
    for schedule in ("cosine", "star"):
        for row in ("final model", "best snapshot (validation NLL)", "ensemble, all", "greedy soup (validation NLL)"):
            entry = summary[(schedule, row)]
            assert entry["seeds"] == 2 and all(0.0 <= v <= 1.0 for v in entry["holdout"]["accuracy"])
            assert all(finite(v) and v > 0 for v in entry["holdout"]["nll"] + entry["holdout"]["brier"])
    assert ("anchor", "deep ensemble of 2 cosine runs (2x compute)") in summary
    assert "# RTE, several epochs" in markdown and "official RTE validation split" in markdown
    assert "goal met" in markdown
    check_plots(payload)


def test_gpu_quick_runs_every_part_records_each_and_resumes(tmp_path: Path) -> None:
    flags = ("--work_dir", str(tmp_path / "work"))
    payload, markdown = run_quick("gpu", tmp_path, *flags)
    parts = payload["parts"]
    assert list(parts) == ["training", "load_verify", "ensemble", "recipe", "stacked"]
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(parts, "ok")
    training = parts["training"]["result"]
    assert training["snapshot_steps"] == [4, 8, 12, 16, 20]  # 5 cycles fitted to 20 steps
    assert len(training["stall_ms"]) == 5 and all(finite(ms) for ms in training["stall_ms"])
    assert [len(training["seconds"][arm]) for arm in ("cosine", "sgdr", "resets")] == [1, 1, 1]
    assert training["ratio"] > 0 and [r["arm"] for r in training["runs"]] == ["cosine", "sgdr", "resets"]
    split = training["stall_parts"]  # the resets arm (same restarts, no snapshots) splits the stall
    for key in ("restart_ms", "snapshot_ms", "writer_ms"):
        assert len(split[key]) == 5 and all(finite(ms) for ms in split[key])
    assert [r["snapshots"] for r in training["runs"]] == [[], [4, 8, 12, 16, 20], []]  # resets wrote none
    assert "Split by a third arm" in markdown
    load = parts["load_verify"]["result"]
    files = sorted((tmp_path / "work" / "quick" / "snapshots").glob("cycle-*/*.safetensors"))
    assert load["members"] == len(files) == 5 and load["bytes"] == sum(f.stat().st_size for f in files)
    assert load["resident_members"] == 0 and load["load_verify_s"] == load["verify_s"] + load["load_to_device_s"]
    ensemble = parts["ensemble"]["result"]
    assert [s["sequences"] for s in ensemble["sizes"]] == [4, 8]
    for size in ensemble["sizes"]:  # on the CPU one member at a time: every snapshot, every last-k ensemble
        assert size["resident_models_peak"] == 1 and size["rows"] == 10 and size["ratio"] > 0
    stacked = parts["stacked"]["result"]
    assert stacked["members"] == 5 and stacked["max_abs_logit_difference"] < 1e-4  # the same logits
    recipe = parts["recipe"]["result"]
    assert recipe["snapshots"] == 3 and 0.0 <= recipe["ensemble"]["accuracy"] <= 1.0
    assert "recipes/glue.py --config recipes/configs/glue_cpu_5ep_T0-63_Tmult-1.json" in recipe["command"]
    assert payload["machine"]["device"] == "CPU (no GPU)" and payload["machine"]["accelerate"]
    assert payload["machine"]["safetensors"] in markdown
    for target, count in (("≤ 5 ms", 1), ("≤ 1.01×", 1), ("≤ 1.2×", 2), ("≤ 0.5 s", 1)):  # evaluate: one per size
        rows = [line for line in markdown.splitlines() if f"| {target} |" in line]
        assert len(rows) == count and all(row.endswith(("| met |", "| not met |")) for row in rows)
    assert recipe["table"] in markdown and "python3 benchmarks/gpu.py --quick" in markdown

    part_files = sorted(tmp_path.glob("part-*_quick.json"))
    stamps = [path.stat().st_mtime_ns for path in part_files]
    again, _ = run_quick("gpu", tmp_path, *flags)  # a restart keeps the parts already done
    assert [path.stat().st_mtime_ns for path in part_files] == stamps and again["parts"] == parts

    # A part recorded by other code (an older commit, another machine) is measured again, not passed off as new.
    stacked_file = tmp_path / "part-stacked_quick.json"
    older = {**json.loads(stacked_file.read_text(encoding="utf-8")), "fingerprint": "from-an-older-commit"}
    older["result"]["max_abs_logit_difference"] = -1.0
    stacked_file.write_text(json.dumps(older), encoding="utf-8")
    stamps = {path.name: path.stat().st_mtime_ns for path in part_files}
    third, _ = run_quick("gpu", tmp_path, *flags)
    rerun = [path.name for path in part_files if path.stat().st_mtime_ns != stamps[path.name]]
    assert rerun == ["part-stacked_quick.json"]
    assert third["parts"]["stacked"]["fingerprint"] == parts["stacked"]["fingerprint"]
    assert 0 <= third["parts"]["stacked"]["result"]["max_abs_logit_difference"] < 1e-4


def test_snapshot_write_quick_records_a_row_per_safetensors_version(tmp_path: Path) -> None:
    import safetensors

    older = {"safetensors": "0.7.0", "model": "GPT-2 124M", "writes": [{"write_s": 2.3}],
             "worst": {"loop_rate_ratio": 0.01, "loop_lost_s": 2.2, "longest_pause_ms": 108.6}}  # fmt: skip
    (tmp_path / "snapshot_write_quick.json").write_text(json.dumps({"rows": {"0.7.0": older}}), encoding="utf-8")
    payload, markdown = run_quick("snapshot_write", tmp_path)
    assert set(payload["rows"]) == {"0.7.0", safetensors.__version__}  # a run adds its version's row, keeps others
    row = payload["rows"][safetensors.__version__]
    (write,) = row["writes"]
    assert write["write_s"] > 0 and 0 < write["loop_rate_ratio"] and write["longest_pause_ms"] > 0
    assert row["worst"]["loop_rate_ratio"] == write["loop_rate_ratio"] and row["weights_mb"] > 0
    assert row["transformers"] and row["torch"] and f"| {safetensors.__version__} | " in markdown
    assert "| 0.7.0 | ?, ? | GPT-2 124M | 2.30 | 0.01x of alone | 2.20 | 108.6 |" in markdown


def test_digests_quick_times_both_formats_on_the_same_file(tmp_path: Path) -> None:
    payload, markdown = run_quick("digests", tmp_path)
    (row,) = payload["rows"]
    assert row["files"] == 1 and row["mb_each"] == 80 and row["pieces"] == 3  # 80 MB in 32 MiB pieces
    assert 1 <= row["record_threads"] <= row["threads"] <= 3 and row["one_thread_gb_s"] > 0
    assert all(row[key] > 0 for key in ("format1_verify_s", "format2_record_s", "format2_verify_s"))
    assert "| 1 | 80 | " in markdown and f"| 3 | {row['record_threads']}, {row['threads']} |" in markdown
