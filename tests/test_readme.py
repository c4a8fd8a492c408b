"""The README's quick-start table is the current output of a real run, not a stale copy.

`benchmarks/results/quickstart/ensemble_results.json` is what the quick start's job wrote (`recipes/glue.py` with
`recipes/configs/glue_cpu_5ep_T0-63_Tmult-1.json`); the README shows its table. When the table's format changes
(a column, a number's digits, the members' weights), this fails until the README shows what the job prints now.
"""

from __future__ import annotations

from pathlib import Path

from hf_sgdr.snapshots import EvaluationReport

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_shows_the_quick_start_table_as_the_package_prints_it() -> None:
    report = EvaluationReport.load_json(REPO / "benchmarks" / "results" / "quickstart" / "ensemble_results.json")
    table = [line.rstrip() for line in report.to_table().splitlines()]
    readme = [line.rstrip() for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()]
    start = readme.index(table[0])
    assert readme[start : start + len(table)] == table
    # The reading under it quotes the same numbers.
    full = report.row("ensemble (last 5, average)").metrics
    final = report.row("cycle-004").metrics
    text = "\n".join(readme)
    assert f"NLL {full['nll']:.3f} against {final['nll']:.3f} for the final model" in text


def test_the_readme_gives_the_test_command_that_ci_runs_and_the_three_ways_in() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = 'python -m pytest -m "not slow" -n 2 -q'
    assert command in readme
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert any(line.startswith(command) for line in ci.splitlines()), ".ci/run no longer runs the README's command"
    for way in ('lr_scheduler_type="sgdr"', "SGDRTrainer(", "accelerate launch", "recipes/glue.py"):
        assert way in readme
