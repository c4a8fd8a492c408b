"""Property tests over the schedule's whole parameter space (hypothesis), and very long runs."""

from __future__ import annotations

import io
import math
import pickle
import time

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hf_sgdr import SGDRSchedule, SGDRScheduler

PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def schedules(draw: st.DrawFn) -> SGDRSchedule:
    T_0 = draw(st.integers(1, 5_000))
    return SGDRSchedule(
        T_0=T_0,
        T_mult=draw(st.one_of(st.just(1.0), st.floats(1.0, 4.0), st.sampled_from([1.1, 1.5, 2.0, 3.0]))),
        eta_min=draw(st.one_of(st.just(0.0), st.floats(1e-9, 1e-4))),
        lr_decay=draw(st.one_of(st.just(1.0), st.floats(0.05, 1.0))),
        warmup_steps=draw(st.integers(0, 300)),
        warmup_start_lr=draw(st.one_of(st.just(0.0), st.floats(0.0, 1e-3))),
        restart_warmup_steps=draw(st.integers(0, T_0 - 1)),
        cycle_limit=draw(st.one_of(st.none(), st.integers(1, 40))),
    )


steps = st.one_of(st.integers(0, 10_000), st.integers(0, 10**12))


@PROFILE
@given(schedule=schedules(), t=steps, max_lr=st.floats(1e-3, 1.0))
def test_every_lr_is_finite_and_within_its_cycles_range(schedule: SGDRSchedule, t: int, max_lr: float) -> None:
    lr = schedule.lr(t, max_lr)
    assert math.isfinite(lr)
    pos = schedule.position(t)
    tolerance = 1e-12 * max_lr
    if pos.in_warmup:
        low, high = sorted((schedule.warmup_start_lr, max_lr))
    else:
        cycle = pos.cycle if not pos.finished else pos.cycle - 1
        high, low = schedule.cycle_bounds(cycle, max_lr)
    assert low - tolerance <= lr <= high + tolerance


@PROFILE
@given(schedule=schedules(), t=steps)
def test_positions_are_consistent_with_the_boundary_index(schedule: SGDRSchedule, t: int) -> None:
    pos = schedule.position(t)
    if pos.in_warmup:
        assert t < schedule.warmup_steps and pos.start == schedule.warmup_steps
        return
    assert pos.start <= t and (pos.finished or t < pos.start + pos.length)
    assert schedule.cycle_start(pos.cycle) == pos.start
    if not pos.finished:
        assert schedule.cycle_start(pos.cycle + 1) == pos.start + pos.length
    if pos.cycle > 0:
        assert schedule.cycle_start(pos.cycle - 1) < pos.start  # strictly increasing boundaries
    assert schedule.is_cycle_end(t) == (pos.t_cur == 0 and pos.cycle >= 1)
    assert schedule.is_restart(t) == (pos.t_cur == 0 and pos.cycle >= 1 and not pos.finished)
    if t <= 50_000:  # the explicit lists agree where they are short enough to build
        ends = schedule.cycle_ends(t)
        assert len(ends) == pos.cycle and ends == sorted(set(ends))
        assert schedule.is_restart(t) == (t in schedule.restarts(t)[-1:])


@PROFILE
@given(
    num_training_steps=st.integers(1, 200_000),
    num_cycles=st.integers(1, 30),
    T_mult=st.one_of(st.just(1.0), st.floats(1.0, 3.0)),
    warmup_fraction=st.floats(0.0, 0.5),
    restart_warmup_steps=st.integers(0, 20),
)
def test_budget_fit_ends_on_a_cycle_end_or_raises(
    num_training_steps: int, num_cycles: int, T_mult: float, warmup_fraction: float, restart_warmup_steps: int
) -> None:
    warmup = int(num_training_steps * warmup_fraction)
    try:
        schedule = SGDRSchedule.fit_budget(
            num_training_steps,
            num_cycles,
            T_mult=T_mult,
            warmup_steps=warmup,
            restart_warmup_steps=restart_warmup_steps,
        )
    except ValueError as error:
        assert "num_cycles" in str(error) or "num_training_steps" in str(error)
        return
    ends = schedule.cycle_ends(2 * num_training_steps)
    assert len(ends) == num_cycles and ends[-1] == num_training_steps
    assert len(schedule.restarts(num_training_steps)) == num_cycles - 1


@settings(max_examples=40, deadline=None)
@given(schedule=schedules(), stop=st.integers(0, 400), groups=st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=3))
def test_scheduler_state_round_trip_at_random_steps(schedule: SGDRSchedule, stop: int, groups: list[float]) -> None:
    assume(all(lr > schedule.eta_min for lr in groups))

    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in groups])

    def run(scheduler: SGDRScheduler, n: int) -> list[list[float]]:
        out = []
        for _ in range(n):
            scheduler.optimizer.step()
            scheduler.step()
            out.append([*scheduler.get_last_lr(), scheduler.is_at_cycle_end(), scheduler.is_restart_step()])
        return out

    reference = run(SGDRScheduler(optimizer(), schedule=schedule), stop + 50)
    first = SGDRScheduler(optimizer(), schedule=schedule)
    head = run(first, stop)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = SGDRScheduler(optimizer(), schedule=schedule)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert head + run(resumed, 50) == reference


@PROFILE
@given(schedule=schedules(), up_to=st.integers(0, 20_000))
def test_boundary_index_equals_the_naive_recurrence(schedule: SGDRSchedule, up_to: int) -> None:
    ends, start, cycle = [], schedule.warmup_steps, 0
    while schedule.cycle_limit is None or cycle < schedule.cycle_limit:
        start += schedule.cycle_length(cycle)
        if start > up_to:
            break
        ends.append(start)
        cycle += 1
    assert schedule.cycle_ends(up_to) == ends


def test_t_mult_barely_above_one_keeps_the_index_small() -> None:
    schedule = SGDRSchedule(T_0=1, T_mult=1 + 1e-9)
    began = time.perf_counter()
    pos = schedule.position(10**12)
    assert time.perf_counter() - began < 1.0
    assert pos.start <= 10**12 < pos.start + pos.length and pos.length > 1
    assert len(schedule._runs.cycles) < 2_000 < pos.cycle  # runs of equal-length cycles, not one per cycle
    # The first cycles all have length 1 and the index agrees with the rule near run edges.
    assert schedule.cycle_ends(5) == [1, 2, 3, 4, 5]
    for k in range(1, len(schedule._runs.cycles) - 1):
        first = schedule._runs.cycles[k]
        assert schedule.cycle_length(first) > schedule.cycle_length(first - 1)


INVALID = {
    "T_0": st.one_of(st.integers(max_value=0), st.floats(0.01, 1e6).filter(lambda x: not x.is_integer())),
    "T_mult": st.one_of(st.floats(max_value=0.999999, allow_infinity=False), st.just(float("inf"))),
    "eta_min": st.one_of(st.floats(max_value=-1e-12, allow_infinity=False), st.just(float("nan"))),
    "eta_max": st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.just(float("inf"))),
    "lr_decay": st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.floats(min_value=1.000001)),
    "warmup_steps": st.integers(max_value=-1),
    "warmup_start_lr": st.floats(max_value=-1e-12, allow_infinity=False),
    "restart_warmup_steps": st.one_of(st.integers(max_value=-1), st.integers(min_value=10)),
    "cycle_limit": st.integers(max_value=0),
}


@PROFILE
@given(data=st.data(), name=st.sampled_from(sorted(INVALID)))
def test_invalid_inputs_always_raise_value_error_naming_the_parameter(data: st.DataObject, name: str) -> None:
    value = data.draw(INVALID[name])
    kwargs = {"T_0": 10, name: value}
    with pytest.raises(ValueError, match=name):
        SGDRSchedule(**kwargs)


def test_query_at_step_1e12_is_constant_time_and_memory() -> None:
    schedule = SGDRSchedule(T_0=100, T_mult=1.0)
    schedule.position(10**12)
    began = time.perf_counter()
    for t in range(10**12, 10**12 + 10_000):
        schedule.lr(t, 0.1)
    per_query = (time.perf_counter() - began) / 10_000
    assert per_query < 1e-4  # microseconds in practice; a loop over cycles would take far longer
    assert schedule._runs.cycles == [0]


def test_scheduler_state_is_bounded_over_a_million_cycles() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = SGDRScheduler(optimizer, T_0=1)  # one cycle per step
    optimizer.step()
    sizes = []
    for total in (10, 1_000_000):
        while scheduler.last_epoch < total:
            scheduler.step()
        sizes.append(len(pickle.dumps(scheduler.state_dict())))
        assert scheduler.current_cycle == total
    assert sizes[1] - sizes[0] <= 8  # only the integers' widths grow
