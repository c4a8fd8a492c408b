"""Explicit cycle lists (`cycles=`): lengths in steps or as fractions of the budget, a peak factor per cycle,
the budget fit, events, checkpoint round trips, the `lr_scheduler_kwargs` path and clear errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import get_scheduler

import hf_sgdr
from hf_sgdr import SGDRSchedule, SGDRScheduler, build_schedule
from hf_sgdr.schedule import parse_cycles, resolve_cycles

STAR = [[0.4, 1], [0.15, 0.5], [0.15, 0.5], [0.15, 0.5], [0.15, 0.5]]


def _optimizer(lr: float = 1e-3, groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr * (i + 1)} for i in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def test_fractions_fill_the_budget_after_the_warmup_and_the_last_cycle_absorbs_rounding() -> None:
    schedule = build_schedule(cycles=STAR, num_training_steps=315, warmup_steps=6)
    assert schedule.cycles == ((124, 1.0), (46, 0.5), (46, 0.5), (46, 0.5), (47, 0.5))
    assert schedule.cycle_limit == 5 and schedule.T_0 == 124
    assert schedule.cycle_ends(10_000) == [130, 176, 222, 268, 315]
    assert schedule.restarts(10_000) == [130, 176, 222, 268]
    assert schedule.budget_warnings(315, [1e-3]) == []  # ends exactly on the last cycle's end


def test_peaks_scale_each_cycle_and_the_cosine_follows_the_normative_formula() -> None:
    lr = 2e-3
    schedule = build_schedule(cycles=[[10, 1.0], [5, 0.5], [5, 0.25]], eta_min=1e-5)
    for t in range(25):
        pos = schedule.position(t)
        if pos.finished:
            expected = 1e-5
        else:
            peak = lr * (1.0, 0.5, 0.25)[pos.cycle]
            expected = 1e-5 + 0.5 * (peak - 1e-5) * (1 + math.cos(math.pi * pos.t_cur / pos.length))
        assert schedule.lr(t, lr) == pytest.approx(expected, rel=1e-12)
    rows = schedule.describe(20, lr)
    assert [(r.start, r.length) for r in rows] == [(0, 10), (10, 5), (15, 5)]
    assert [r.max_lr for r in rows] == pytest.approx([lr, lr / 2, lr / 4])


def test_shrinking_cycles_follow_from_a_list_with_restart_warmup() -> None:
    schedule = build_schedule(cycles=[8, 4, 2], restart_warmup_steps=1)
    assert [schedule.cycle_length(i) for i in range(3)] == [8, 4, 2]
    assert schedule.lr(8, 1.0) == pytest.approx(0.0)  # the restart warmup starts at the floor
    assert schedule.lr(9, 1.0) == pytest.approx(1.0)  # and reaches the peak after one step
    with pytest.raises(ValueError, match=r"restart_warmup_steps must be < 2 \(the shortest cycle after the first\)"):
        build_schedule(cycles=[8, 4, 2], restart_warmup_steps=2)


def test_scheduler_events_and_a_weights_only_round_trip_mid_cycle(tmp_path) -> None:
    optimizer = _optimizer(groups=2)
    scheduler = SGDRScheduler(
        optimizer, cycles=[[0.5, 1], [0.25, 0.5], [0.25, 0.5]], num_training_steps=22, warmup_steps=2
    )
    ends, lrs = [], []
    for _ in range(13):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
        if scheduler.is_at_cycle_end():
            ends.append((scheduler.last_epoch, scheduler.completed_cycle, scheduler.is_restart_step()))
    assert ends == [(12, 0, True)]
    torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")
    resumed = SGDRScheduler(_optimizer(groups=2), T_0=3)
    with pytest.warns(hf_sgdr.SGDRWarning, match="resuming with the saved SGDR schedule"):
        resumed.load_state_dict(torch.load(tmp_path / "scheduler.pt", weights_only=True))
    for reference in (scheduler, resumed):
        trace = []
        for _ in range(10):
            reference.optimizer.step()
            reference.step()
            trace.append((reference.get_last_lr(), reference.is_at_cycle_end()))
        if reference is scheduler:
            expected = trace
    assert trace == expected
    assert [end for _, end in trace].count(True) == 2  # cycles 1 and 2 end at steps 17 and 22


def test_cycles_through_get_scheduler_and_lr_scheduler_kwargs_json() -> None:
    optimizer = _optimizer()
    scheduler = get_scheduler(
        "sgdr",
        optimizer,
        num_warmup_steps=0,
        num_training_steps=40,
        scheduler_specific_kwargs={"cycles": "[[0.5, 1], [0.5, 0.5]]"},
    )
    assert scheduler.schedule.cycles == ((20, 1.0), (20, 0.5))
    assert SGDRSchedule.from_dict(scheduler.schedule.to_dict()) == scheduler.schedule


def test_the_compact_string_form() -> None:
    assert parse_cycles("0.4:1,0.3:0.5 0.3") == [(0.4, 1.0), (0.3, 0.5), (0.3, 1.0)]
    assert parse_cycles([{"length": 100}, {"length": 50, "peak": 0.5}]) == [(100, 1.0), (50, 0.5)]
    assert resolve_cycles("100:1,50:0.5", None) == ((100, 1.0), (50, 0.5))


@pytest.mark.parametrize(
    ("cycles", "extra", "message"),
    [
        ([], {}, r"cycles must be a non-empty list of cycles"),
        ([[0.5, 1], [100, 1]], {"num_training_steps": 200}, r"every length in steps or every length as a fraction"),
        ([[0.5, 1], [0.4, 1]], {"num_training_steps": 200}, r"fractions of the budget must sum to 1; they sum to 0.9"),
        ([[0.5, 1], [0.5, 1]], {}, r"fractions need num_training_steps"),
        ([[10, 0]], {}, r"cycles\[0\] peak must be a finite number > 0; got 0"),
        ([[12.5, 1]], {}, r"cycles\[0\] length must be steps \(an integer >= 1\) or a fraction of the budget"),
        ([[10, 1, 2]], {}, r"cycles\[0\] must be \[length\] or \[length, peak\]"),
        ([{"steps": 10}], {}, r"cycles\[0\] takes the keys length \(required\) and peak"),
        ("[[0.5, 1]", {}, r"cycles is not valid JSON"),
        ([[10, 1]], {"T_0": 10}, r"cycles lists every cycle; do not pass T_0=10"),
        ([[10, 1]], {"T_mult": 2}, r"do not pass T_mult=2"),
        ([[10, 1]], {"num_cycles": 3}, r"do not pass num_cycles=3"),
    ],
)
def test_bad_cycle_lists_get_clear_errors(cycles: object, extra: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_schedule(cycles=cycles, **extra)


def test_a_floor_above_a_scaled_peak_is_refused_naming_the_factor() -> None:
    with pytest.raises(ValueError, match=r"times the lowest cycle peak factor 0.01"):
        SGDRScheduler(_optimizer(lr=1e-3), cycles=[[10, 1], [10, 0.01]], eta_min=1e-4)


def test_describe_and_plot_take_a_cycle_list(tmp_path, capsys) -> None:
    from hf_sgdr.cli import main

    flags = [
        "--num_training_steps",
        "315",
        "--warmup_steps",
        "6",
        "--lr",
        "1e-4",
        "--cycles",
        "0.4:1,0.15:0.5,0.15:0.5,0.15:0.5,0.15:0.5",
    ]
    assert main(["describe", *flags, "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert [row["length"] for row in described["cycles"]] == [124, 46, 46, 46, 47]
    assert [row["max_lr"] for row in described["cycles"]] == pytest.approx([1e-4, 5e-5, 5e-5, 5e-5, 5e-5])
    assert main(["plot", *flags, "-o", str(tmp_path / "star.png")]) == 0
    assert (tmp_path / "star.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        main(["describe", "--num_training_steps", "100", "--cycles", "0.5:1,0.4:1"])
    assert "fractions of the budget must sum to 1" in capsys.readouterr().err
