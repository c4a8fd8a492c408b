"""Layer 1: the pure schedule arithmetic against torch, exact integers and hand-computed values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hf_sgdr import SGDRSchedule, build_schedule
from hf_sgdr.schedule import MAX_STEP


def _torch_lrs(T_0: int, T_mult: int, eta_min: float, base_lrs: list[float], steps: int) -> list[list[float]]:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in base_lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, base_lrs, strict=True)])
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=T_0, T_mult=T_mult, eta_min=eta_min)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr())
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("T_0", [1, 3, 10, 37])
@pytest.mark.parametrize("T_mult", [1, 2, 3])
@pytest.mark.parametrize("eta_min", [0.0, 1e-5, 0.003])
def test_equals_torch_cosine_annealing_warm_restarts(T_0: int, T_mult: int, eta_min: float) -> None:
    base_lrs = [0.1, 0.02, 5e-4 + eta_min]
    schedule = SGDRSchedule(T_0=T_0, T_mult=T_mult, eta_min=eta_min)
    expected = _torch_lrs(T_0, T_mult, eta_min, base_lrs, 600)
    for t, torch_lrs in enumerate(expected):
        assert schedule.lrs(t, base_lrs) == torch_lrs, f"step {t}"


def _naive_cycle_ends(T_0: int, T_mult: float, up_to: int) -> list[int]:
    """Independent recurrence: add rounded lengths one cycle at a time."""
    ends, start, i = [], 0, 0
    while True:
        length = max(1, math.floor(T_0 * T_mult**i + 0.5))
        start += length
        if start > up_to:
            return ends
        ends.append(start)
        i += 1


@pytest.mark.parametrize(("T_0", "T_mult"), [(7, 1.5), (3, 3.0), (10, 1.1), (1, 1.1), (2, 1.05)])
def test_boundaries_are_integer_exact_up_to_a_million_steps(T_0: int, T_mult: float) -> None:
    schedule = SGDRSchedule(T_0=T_0, T_mult=T_mult)
    horizon = 1_000_000
    ends = schedule.cycle_ends(horizon)
    assert ends == _naive_cycle_ends(T_0, T_mult, horizon)
    assert all(b > a for a, b in itertools.pairwise(ends))
    # Every end is a restart (no cycle limit), and the step before it is the last step of its cycle.
    previous = 0
    for cycle, end in enumerate(ends, start=1):
        pos = schedule.position(end)
        assert (pos.cycle, pos.t_cur, pos.start) == (cycle, 0, end)
        before = schedule.position(end - 1)
        assert before.cycle == cycle - 1 and before.t_cur == before.length - 1 == end - previous - 1
        assert schedule.is_cycle_end(end) and schedule.is_restart(end)
        previous = end
    end_set = set(ends)
    for t in range(1, min(horizon, 5_000)):
        assert schedule.is_cycle_end(t) == (t in end_set)


def test_step_by_step_simulation_agrees_with_random_access_queries() -> None:
    schedule = SGDRSchedule(T_0=5, T_mult=1.5, warmup_steps=4)
    fresh = SGDRSchedule(T_0=5, T_mult=1.5, warmup_steps=4)
    t_cur, length, cycle = -4, 5, 0
    for t in range(20_000):
        if t_cur == length:
            cycle, t_cur = cycle + 1, 0
            length = max(1, math.floor(5 * 1.5**cycle + 0.5))
        pos = schedule.position(t)
        assert (pos.cycle, pos.t_cur, pos.length) == (cycle, t_cur, length)
        t_cur += 1
    # Random access on a schedule with a cold cache answers the same.
    for t in (19_999, 3, 12_345, 0, 7_777):
        assert fresh.position(t) == schedule.position(t)


def test_warmup_is_linear_from_warmup_start_lr_then_cycles_begin() -> None:
    schedule = SGDRSchedule(T_0=10, warmup_steps=4, warmup_start_lr=0.01)
    assert [schedule.lr(t, 0.1) for t in range(4)] == pytest.approx([0.01, 0.0325, 0.055, 0.0775])
    assert schedule.lr(4, 0.1) == pytest.approx(0.1)  # first step of cycle 0 at the peak
    assert schedule.cycle_ends(40) == [14, 24, 34]
    pos = schedule.position(2)
    assert pos.in_warmup and pos.cycle == 0 and pos.fraction == 0.0


def test_restart_warmup_ramps_from_floor_to_peak_then_cosine_over_the_rest() -> None:
    schedule = SGDRSchedule(T_0=10, eta_min=0.001, restart_warmup_steps=4)
    # Cycle 0 has no restart warmup: plain cosine.
    assert schedule.lr(0, 0.1) == pytest.approx(0.1)
    # Cycle 1 starts at t=10: floor, then linear to the peak over 4 steps.
    assert [schedule.lr(t, 0.1) for t in range(10, 15)] == pytest.approx([0.001, 0.02575, 0.0505, 0.07525, 0.1])
    expected = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * 3 / 6)) / 2
    assert schedule.lr(17, 0.1) == pytest.approx(expected)


def test_lr_decay_scales_peak_and_floor_per_cycle() -> None:
    schedule = SGDRSchedule(T_0=4, eta_min=0.01, lr_decay=0.5)
    assert schedule.lr(0, 0.1) == pytest.approx(0.1)
    assert schedule.lr(4, 0.1) == pytest.approx(0.05)
    assert schedule.lr(8, 0.1) == pytest.approx(0.025)
    # Mid-cycle 1 (t_cur=2 of 4): halfway between decayed floor 0.005 and decayed peak 0.05.
    assert schedule.lr(6, 0.1) == pytest.approx(0.005 + (0.05 - 0.005) / 2)


def test_cycle_limit_holds_at_the_last_cycles_decayed_floor() -> None:
    schedule = SGDRSchedule(T_0=5, T_mult=2, eta_min=0.02, lr_decay=0.5, cycle_limit=2)
    assert schedule.cycle_ends(100) == [5, 15]
    assert schedule.restarts(100) == [5]
    assert schedule.is_cycle_end(15) and not schedule.is_restart(15)
    for t in (15, 16, 1_000, 10**12):
        assert schedule.lr(t, 0.1) == pytest.approx(0.5 * 0.02)
        assert schedule.position(t).finished
    assert schedule.steps_to_next_restart(7) is None
    assert schedule.steps_to_cycle_end(7) == 8


def test_eta_max_overrides_every_group_peak() -> None:
    schedule = SGDRSchedule(T_0=10, eta_max=0.5)
    assert schedule.lrs(0, [0.1, 0.2]) == [0.5, 0.5]


def test_queries() -> None:
    schedule = SGDRSchedule(T_0=10, T_mult=2, warmup_steps=5)
    assert schedule.cycle_start(0) == 5 and schedule.cycle_start(2) == 35
    assert schedule.cycle_length(3) == 80
    assert schedule.steps_to_next_restart(5) == 10 and schedule.steps_to_next_restart(14) == 1
    assert schedule.position(20).fraction == pytest.approx(0.25)
    assert schedule.multiplier(5, 0.1) == pytest.approx(1.0)
    rows = schedule.describe(200, max_lr=0.1)
    assert [(r.start, r.end, r.length) for r in rows] == [
        (5, 15, 10),
        (15, 35, 20),
        (35, 75, 40),
        (75, 155, 80),
        (155, 315, 160),
    ]
    assert rows[0].max_lr == pytest.approx(0.1) and rows[0].min_lr == pytest.approx(schedule.lr(14, 0.1))


@pytest.mark.parametrize("T_mult", [1.0, 1.1, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("num_cycles", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("num_training_steps", [17, 100, 999, 12_345])
@pytest.mark.parametrize("warmup_steps", [0, 7])
def test_budget_fit_ends_exactly_on_the_last_cycle_end(
    T_mult: float, num_cycles: int, num_training_steps: int, warmup_steps: int
) -> None:
    try:
        schedule = SGDRSchedule.fit_budget(num_training_steps, num_cycles, T_mult=T_mult, warmup_steps=warmup_steps)
    except ValueError as error:
        # Only legitimately impossible fits may refuse, and they say what budget would do.
        assert "num_training_steps >=" in str(error) or "num_cycles must be" in str(error)
        minimum = sum(max(1, math.floor(T_mult**i + 0.5)) for i in range(num_cycles - 1)) + 1 + warmup_steps
        assert num_training_steps < minimum or num_cycles > num_training_steps - warmup_steps
        return
    ends = schedule.cycle_ends(10 * num_training_steps)
    assert len(ends) == num_cycles and ends[-1] == num_training_steps
    assert len(schedule.restarts(num_training_steps)) == num_cycles - 1
    assert schedule.position(num_training_steps - 1).t_cur == schedule.position(num_training_steps - 1).length - 1
    assert not any("mid-cycle" in w for w in schedule.budget_warnings(num_training_steps))
    # All but the last cycle follow the rule; the last is at least as long as the rule's.
    lengths = [schedule.cycle_length(i) for i in range(num_cycles)]
    assert lengths[:-1] == [max(1, math.floor(schedule.T_0 * T_mult**i + 0.5)) for i in range(num_cycles - 1)]


def test_budget_fit_matches_a_hand_computed_case() -> None:
    schedule = SGDRSchedule.fit_budget(1000, 4, T_mult=2, warmup_steps=50)
    assert schedule.T_0 == 63 and schedule.cycle_ends(1000) == [113, 239, 491, 1000]
    assert SGDRSchedule.fit_budget(10, 4).cycle_ends(10) == [2, 4, 6, 10]


def test_default_budget_fit_when_neither_T_0_nor_num_cycles() -> None:
    schedule = build_schedule(num_training_steps=400, T_mult=2.0)
    assert schedule.cycle_limit == 4 and schedule.cycle_ends(400)[-1] == 400
    tiny = build_schedule(num_training_steps=3)  # four cycles do not fit: fewer, still ending on a cycle end
    assert tiny.cycle_ends(3)[-1] == 3


def test_budget_warnings() -> None:
    mid = SGDRSchedule(T_0=30).budget_warnings(100, [0.1])
    assert any("mid-cycle" in w and "90" in w and "120" in w for w in mid)
    (none, _) = SGDRSchedule(T_0=1000).budget_warnings(4, [0.1])  # the first cycle outlasts the budget
    assert none.startswith("no cycle ends within the budget: step 4 is 0.4% into the first cycle, which ends at step")
    assert "no snapshot is written" in none
    few = SGDRSchedule(T_0=60).budget_warnings(120, [0.1])
    assert any("only 1 restart" in w for w in few)
    narrow = SGDRSchedule(T_0=10, eta_min=0.02).budget_warnings(100, [0.1])
    assert any("eta_max / eta_min < 10" in w for w in narrow)
    assert SGDRSchedule(T_0=25).budget_warnings(100, [0.1]) == []


def test_huge_steps_answer_in_constant_time_and_bounded_cache() -> None:
    flat = SGDRSchedule(T_0=1000)
    assert flat.position(10**12) == (10**9, 10**12, 1000, 0)
    assert flat._runs.cycles == [0]  # T_mult=1: a single run of equal cycles, nothing more cached
    grow = SGDRSchedule(T_0=10, T_mult=2)
    pos = grow.position(10**12)
    assert pos.start <= 10**12 < pos.start + pos.length
    assert len(grow._runs.cycles) < 60
    assert grow.position(MAX_STEP).length is not None
    with pytest.raises(ValueError, match="t must be"):
        grow.position(MAX_STEP + 1)


def test_to_dict_round_trip_and_plain_types() -> None:
    schedule = SGDRSchedule.fit_budget(500, 3, T_mult=1.5, warmup_steps=10, eta_min=1e-6, lr_decay=0.9)
    data = schedule.to_dict()
    assert all(isinstance(v, (int, float, type(None))) and not isinstance(v, bool) for v in data.values())
    assert SGDRSchedule.from_dict(data) == schedule
    with pytest.raises(ValueError, match="unknown SGDR schedule parameter"):
        SGDRSchedule.from_dict({**data, "bogus": 1})
