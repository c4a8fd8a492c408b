"""Bad and extreme schedule values: every input is bounded with a clear error naming it and its accepted range
(the ranges come from `schedule_parameters`), and every legal schedule is answered in well under 2 s: the budget
fit, the pitfall warnings, `describe` (a summary beyond 200 cycles), `plot` (sampled) and the scheduler."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from hf_sgdr import SGDRScheduler
from hf_sgdr.cli import main
from hf_sgdr.schedule import SGDRSchedule, build_schedule
from hf_sgdr.schedule_parameters import MAX_STEPS

BUDGET_RANGE = r"num_training_steps must be an integer in \[1, 1e\+09\]"


def _seconds(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
    return time.perf_counter() - began


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


@pytest.mark.parametrize("budget", [10**30, 10**20, MAX_STEPS + 1, 0])
def test_a_budget_out_of_range_is_refused_naming_it(budget: int) -> None:
    optimizer = _optimizer()
    began = time.perf_counter()
    with pytest.raises(ValueError, match=BUDGET_RANGE):
        build_schedule(num_training_steps=budget)
    with pytest.raises(ValueError, match=BUDGET_RANGE):
        build_schedule(T_0=10, num_training_steps=budget)
    with pytest.raises(ValueError, match=BUDGET_RANGE):
        SGDRScheduler(optimizer, num_training_steps=budget)
    with pytest.raises(ValueError, match=BUDGET_RANGE):
        SGDRScheduler(optimizer, T_0=10, num_training_steps=budget)
    assert time.perf_counter() - began < 0.5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"T_mult": 1e200}, r"T_mult must be a finite number in \[1, 1000\]; got 1e\+200"),
        ({"T_mult": float("inf")}, r"T_mult must be a finite number in \[1, 1000\]"),
        ({"T_0": 10**11}, r"T_0 must be an integer in \[1, 1e\+09\]"),
        ({"cycle_limit": 10**12}, r"cycle_limit must be an integer in \[1, 1e\+09\]"),
        ({"warmup_steps": 10**12}, r"warmup_steps must be an integer in \[0, 1e\+09\]"),
        ({"cycles": [[10, 1.0], [10**12, 1.0]]}, r"cycles\[1\] length must be an integer in \[1, 1e\+09\]"),
    ],
)
def test_every_schedule_value_is_bounded_by_its_declared_range(params: dict, message: str) -> None:
    kwargs = {"T_0": 10, **params} if "cycles" not in params else params
    with pytest.raises(ValueError, match=message):
        SGDRSchedule(**kwargs) if "cycles" not in params else build_schedule(**kwargs)


def test_a_fit_that_outgrows_every_budget_is_refused_before_any_power_overflows() -> None:
    with pytest.raises(ValueError, match=r"num_cycles=100000 with T_mult=2 needs num_training_steps >= 1e\+09"):
        build_schedule(num_cycles=10**5, T_mult=2, num_training_steps=MAX_STEPS)
    with pytest.raises(ValueError, match=r"num_cycles must be an integer in \[1, 1e\+09\]"):
        build_schedule(num_cycles=10**12, num_training_steps=MAX_STEPS)


@pytest.mark.parametrize(
    "params",
    [
        {"num_cycles": 10**6},
        {"num_cycles": MAX_STEPS, "T_mult": 1.0},
        {"num_cycles": 10**5, "T_mult": 1.00001},
        {"num_cycles": 3000, "T_mult": 1.001, "restart_warmup_steps": 5},
        {"T_0": 1},
        {"T_0": 1, "T_mult": 1 + 6e-5},  # about the most distinct cycle lengths a budget of 10^9 steps can hold
        {"T_0": 3, "T_mult": 1.00003, "cycle_limit": 10**6},
    ],
)
def test_extreme_legal_schedules_answer_in_well_under_two_seconds(params: dict) -> None:
    optimizer = _optimizer()

    def build_and_warn() -> None:
        scheduler = SGDRScheduler(optimizer, num_training_steps=MAX_STEPS, **params)
        schedule = scheduler.schedule
        schedule.budget_warnings(MAX_STEPS, [0.1])
        schedule.describe(MAX_STEPS, 0.1, limit=200)
        schedule.cycle_ends_text(MAX_STEPS)

    assert _seconds(build_and_warn) < 1.5


def test_describe_summarises_a_million_cycles(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["describe", "--T_0", "1", "--num_training_steps", str(10**6)]
    assert _seconds(lambda: main(argv)) < 1.5
    out = capsys.readouterr().out
    assert "\n  ... 999800 more cycles\n999900 " in out and "(1000000 in all)  (restarts: 999999)" in out
    assert len(out.splitlines()) < 210
    assert _seconds(lambda: main([*argv, "--json"])) < 1.5
    payload = json.loads(capsys.readouterr().out)
    assert payload["num_cycles"] == 10**6 and len(payload["cycles"]) == 200
    assert [c["cycle"] for c in payload["cycles"]][99:101] == [99, 999900]


def test_plot_of_100000_cycles_is_sampled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["plot", "--T_0", "10", "--num_training_steps", "100", "-o", str(tmp_path / "warm.png")])  # imports
    output = tmp_path / "many.png"
    assert _seconds(lambda: main(["plot", "--T_0", "2", "--num_training_steps", "200000", "-o", str(output)])) < 1.5
    assert output.read_bytes().startswith(b"\x89PNG") and f"wrote {output}" in capsys.readouterr().out
