"""`AdaptiveSGDR`: cycle extension on a validation plateau, realised-length events, bounded state."""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Mapping
from typing import Any

import numpy
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import LRScheduler

import hf_sgdr
from hf_sgdr import AdaptiveSGDR, CyclePosition, SGDRSchedule, SGDRScheduler, SGDRWarning
from hf_sgdr.adaptive import HISTORY_LENGTH, RealisedCycle


def _optimizer(lrs: tuple[float, ...] = (0.1,)) -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.randn(3))], "lr": lr} for lr in lrs])


def _adaptive(lrs: tuple[float, ...] = (0.1,), **kwargs: Any) -> AdaptiveSGDR:
    return AdaptiveSGDR(_optimizer(lrs), **kwargs)


def _snapshot(s: SGDRScheduler) -> tuple:
    """Everything training code can ask the scheduler at the current step."""
    return (
        s.last_epoch,
        tuple(s.get_last_lr()),
        s.position(),
        s.current_cycle,
        s.cycle_position(),
        s.is_at_cycle_end(),
        s.is_restart_step(),
        s.completed_cycle,
        s.steps_to_next_restart(),
    )


def _drive(s: SGDRScheduler, until: int, evals: Mapping[int, float] | None = None) -> list[tuple]:
    """Step to `until`, observing `{"eval_loss": evals[t]}` at step t first; one row per step."""
    rows = []
    while s.last_epoch < until:
        extended = None
        if evals and s.last_epoch in evals:
            extended = s.observe({"eval_loss": evals[s.last_epoch]})  # type: ignore[attr-defined]
        rows.append((*_snapshot(s), extended))
        s.optimizer.step()
        s.step()
    return rows


def _cycle_ends(rows: list[tuple]) -> list[tuple[int, int | None, bool]]:
    return [(row[0], row[7], row[6]) for row in rows if row[5]]


def test_is_an_lr_scheduler_with_the_sgdr_event_api() -> None:
    s = _adaptive(initial_T_0=10, T_mult=2, eta_min=1e-4, warmup_steps=3)
    assert isinstance(s, LRScheduler) and isinstance(s, SGDRScheduler)
    assert hf_sgdr.AdaptiveSGDR is AdaptiveSGDR and "AdaptiveSGDR" in hf_sgdr.__all__
    assert s.schedule == SGDRSchedule(T_0=10, T_mult=2, eta_min=1e-4, warmup_steps=3)
    assert (s.monitor, s.greater_is_better, s.reset_optimizer_state, s.num_optimizer_resets) == (None, None, False, 0)
    assert s.effective_monitor == "eval_loss"
    assert s.num_extensions == 0 and s.cycle_extensions == 0 and s.recent_cycles == ()


NO_EXTENSION_CASES = [
    dict(T_mult=1.5, eta_min=1e-3, lr_decay=0.8, warmup_steps=3, restart_warmup_steps=2),
    dict(T_mult=2.0, cycle_limit=3, warmup_steps=2, warmup_start_lr=0.01),
    dict(T_mult=1.0, eta_max=0.05, lr_decay=0.5),
]


@pytest.mark.parametrize("kwargs", NO_EXTENSION_CASES)
def test_without_extension_the_trace_and_events_equal_sgdr_scheduler(kwargs: dict) -> None:
    improving = {t: 10.0 - 0.01 * t for t in range(0, 200, 3)}  # always improves: never extends
    adaptive = _adaptive((0.1, 0.02), initial_T_0=7, patience=1, **kwargs)
    reference = SGDRScheduler(_optimizer((0.1, 0.02)), T_0=7, **kwargs)
    got = _drive(adaptive, 200, improving)
    assert [row[:-1] for row in got] == [row[:-1] for row in _drive(reference, 200)]
    assert adaptive.num_extensions == 0 and not any(row[-1] for row in got)
    assert [g["lr"] for g in adaptive.optimizer.param_groups] == [g["lr"] for g in reference.optimizer.param_groups]


def test_max_extensions_zero_never_extends() -> None:
    s = _adaptive(initial_T_0=8, patience=1, max_extensions_per_cycle=0)
    rows = _drive(s, 40, {t: float(t) for t in range(40)})  # always worse
    assert _cycle_ends(rows) == _cycle_ends(_drive(SGDRScheduler(_optimizer(), T_0=8), 40))
    assert s.num_extensions == 0


def _extended_in_cycle_1() -> tuple[AdaptiveSGDR, list[tuple]]:
    """T_0=10, T_mult=2, 2 warmup steps: nominal cycles [2, 12), [12, 32), [32, 72), [72, 152).

    Evaluations at steps 15, 16, 17 (best, worse, worse) with patience 2 extend cycle 1 from 20 to
    30 steps at step 17.
    """
    s = _adaptive(initial_T_0=10, T_mult=2, warmup_steps=2, eta_min=1e-3, patience=2, extension_factor=1.5)
    return s, _drive(s, 160, {15: 1.0, 16: 1.5, 17: 1.2})


def test_an_extension_lengthens_exactly_the_current_cycle_and_moves_every_later_boundary() -> None:
    s, rows = _extended_in_cycle_1()
    assert [row[-1] for row in rows if row[-1] is not None] == [False, False, True]
    assert s.num_extensions == 1 and s.extension_steps == 10
    nominal = SGDRSchedule(T_0=10, T_mult=2, warmup_steps=2, eta_min=1e-3)
    assert nominal.cycle_ends(160) == [12, 32, 72, 152]
    assert [end for end, _, _ in _cycle_ends(rows)] == [12, 42, 82]  # cycle 1 is 30 steps, the rest move by 10
    assert list(s.recent_cycles) == [
        RealisedCycle(cycle=0, start=2, length=10, extensions=0),
        RealisedCycle(cycle=1, start=12, length=30, extensions=1),
        RealisedCycle(cycle=2, start=42, length=40, extensions=0),
    ]
    for t, row in enumerate(rows):
        lr, pos = row[1][0], row[2]
        if t < 17:  # before the extension: the nominal schedule
            assert lr == nominal.lr(t, 0.1) and pos == nominal.position(t), t
        elif t < 42:  # the current cycle, stretched over its realised 30 steps from the extension on
            assert pos == CyclePosition(1, 12, 30, t - 12)
            # the lr applied at step 17 stays; the next step() takes the longer cycle's value
            assert lr == (nominal.lr(17, 0.1) if t == 17 else nominal.lrs_at(pos, [0.1])[0]), t
        else:  # later cycles: nominal lengths, 10 steps later
            shifted = nominal.position(t - 10)
            assert pos == CyclePosition(shifted.cycle, shifted.start + 10, shifted.length, shifted.t_cur)
            assert lr == nominal.lr(t - 10, 0.1), t
    assert rows[16][8] == 32 - 16 and rows[17][8] == 42 - 17  # steps_to_next_restart follows the extension


def test_events_fire_at_the_realised_boundaries_only() -> None:
    _, rows = _extended_in_cycle_1()
    assert _cycle_ends(rows) == [(12, 0, True), (42, 1, True), (82, 2, True)]
    at_nominal_end = rows[32]
    assert at_nominal_end[2] == CyclePosition(1, 12, 30, 20)
    assert not at_nominal_end[5] and not at_nominal_end[6] and at_nominal_end[7] is None
    after_restart = rows[42]
    assert after_restart[3] == 2 and after_restart[4] == 0.0 and after_restart[1] == (pytest.approx(0.1),)


def test_evaluations_during_the_initial_warmup_count_for_cycle_0() -> None:
    s = _adaptive(initial_T_0=6, warmup_steps=4, warmup_start_lr=0.01, patience=1, extension_factor=1.5)
    rows = _drive(s, 30, {1: 2.0, 2: 3.0})
    nominal = SGDRSchedule(T_0=6, warmup_steps=4, warmup_start_lr=0.01)
    assert rows[2][-1] is True and rows[3][2] == CyclePosition(0, 4, 9, -1)
    assert [row[1][0] for row in rows[:5]] == [nominal.lr(t, 0.1) for t in range(5)]  # the warmup is unchanged
    assert [end for end, _, _ in _cycle_ends(rows)] == [13, 19, 25]


def test_patience_counts_consecutive_evaluations_without_improvement() -> None:
    s = _adaptive(initial_T_0=100, patience=3, extension_factor=2.0)
    s.optimizer.step()
    s.step()
    results = [s.observe({"eval_loss": v}) for v in (5.0, 6.0, 7.0, 4.0, 5.0, 6.0, 4.0)]
    # 5 sets the best; 6, 7 are 2 misses; 4 improves (reset); 5, 6, 4 (ties do not improve) are 3 misses
    assert results == [False, False, False, False, False, False, True]
    assert s.position().length == 200 and s.cycle_extensions == 1
    # The count starts again after an extension, against the same best value 4.
    assert [s.observe({"eval_loss": v}) for v in (4.5, 4.2, 4.1)] == [False, False, True]
    assert s.position().length == 400 and s.cycle_extensions == 2


def test_min_delta_requires_a_large_enough_improvement() -> None:
    s = _adaptive(initial_T_0=100, patience=2, min_delta=0.1)
    s.optimizer.step()
    s.step()
    assert [s.observe({"eval_loss": v}) for v in (1.0, 0.95, 0.92)] == [False, False, True]
    s = _adaptive(initial_T_0=100, patience=2, min_delta=0.1)
    assert [s.observe({"eval_loss": v}) for v in (1.0, 0.95, 0.85, 0.8)] == [False, False, False, False]


def test_counters_and_best_value_reset_at_each_restart() -> None:
    s = _adaptive(initial_T_0=10, patience=2)
    rows = _drive(s, 14, {2: 1.0, 3: 2.0, 11: 3.0, 12: 3.5, 13: 4.0})
    # cycle 0: one miss at step 3. Cycle 1: 3.0 is a new best (not a miss against cycle 0's 1.0),
    # 3.5 the first miss (not the second), 4.0 the second: extension.
    assert [row[-1] for row in rows if row[-1] is not None] == [False, False, False, False, True]
    assert s.current_cycle == 1 and s.cycle_extensions == 1 and s.position().length == 15
    _drive(s, 26)
    assert s.current_cycle == 2 and s.cycle_extensions == 0 and s.recent_cycles[-1].extensions == 1


def test_an_evaluation_at_a_cycle_end_belongs_to_the_cycle_that_ended() -> None:
    s = _adaptive(initial_T_0=5, patience=1, extension_factor=2.0)
    rows = _drive(s, 12, {1: 1.0, 4: 2.0, 10: 9.0, 11: 5.0})
    # Step 4 is the last step inside cycle 0: a miss there extends it to 10 steps. Step 10 is its end:
    # the evaluation there measures cycle 0, which cannot grow any more, and does not start cycle 1's
    # count (else 5.0 at step 11 would not be a new best).
    assert [row[-1] for row in rows if row[-1] is not None] == [False, True, False, False]
    assert rows[10][5] and rows[10][2] == CyclePosition(1, 10, 5, 0)
    assert s.position() == CyclePosition(1, 10, 5, 2) and s.cycle_extensions == 0
    assert s.observe({"eval_loss": 6.0}) is True  # 5.0 at step 11 was cycle 1's first value


def test_the_last_cycle_can_grow_and_nothing_grows_after_the_end() -> None:
    s = _adaptive(initial_T_0=4, cycle_limit=2, eta_min=1e-3, patience=1, extension_factor=2.0)
    rows = _drive(s, 20, {5: 1.0, 6: 2.0, 12: 3.0, 13: 4.0, 14: 1.0})
    assert [row[-1] for row in rows if row[-1] is not None] == [False, True, False, False, False]
    assert _cycle_ends(rows) == [(4, 0, True), (12, 1, False)]
    assert s.position() == CyclePosition(2, 12, None, 8) and s.steps_to_next_restart() is None
    assert rows[6][8] is None and s.get_last_lr() == [pytest.approx(1e-3)]


def test_an_extension_is_bounded_per_cycle_and_by_max_cycle_length() -> None:
    s = _adaptive(initial_T_0=10, patience=1, extension_factor=1.5, max_extensions_per_cycle=2)
    assert [s.observe({"eval_loss": float(v)}) for v in range(5)] == [False, True, True, False, False]
    assert s.position().length == 23  # 10 -> 15 -> floor(22.5 + 0.5)

    s = _adaptive(initial_T_0=10, patience=1, extension_factor=1.5, max_extensions_per_cycle=5, max_cycle_length=20)
    assert [s.observe({"eval_loss": float(v)}) for v in range(5)] == [False, True, True, False, False]
    assert s.position().length == 20 and s.cycle_extensions == 2

    s = _adaptive(initial_T_0=10, patience=1, extension_factor=1.01, max_extensions_per_cycle=3)
    assert [s.observe({"eval_loss": float(v)}) for v in range(4)] == [False, True, True, True]
    assert s.position().length == 13  # at least one step per extension


def test_greater_is_better_both_ways_and_the_eval_prefix() -> None:
    accuracy = _adaptive(initial_T_0=50, monitor="accuracy", patience=2)
    assert accuracy.greater_is_better is None  # inferred at use, like transformers: not name.endswith("loss")
    rising = [accuracy.observe({"eval_accuracy": v, "eval_loss": 9.0}) for v in (0.5, 0.6, 0.7, 0.8)]
    assert rising == [False] * 4 and accuracy.num_extensions == 0
    assert [accuracy.observe({"eval_accuracy": v}) for v in (0.7, 0.6)] == [False, True]

    flipped = _adaptive(initial_T_0=50, monitor="eval_accuracy", greater_is_better=False, patience=2)
    assert [flipped.observe({"eval_accuracy": v}) for v in (0.5, 0.6, 0.7)] == [False, False, True]

    loss = _adaptive(initial_T_0=50, monitor=None, patience=2)
    assert loss.effective_monitor == "eval_loss" and loss.greater_is_better is None
    assert [loss.observe({"eval_loss": v}) for v in (0.5, 0.4, 0.3, 0.35, 0.36)] == [False] * 4 + [True]


def test_a_non_finite_metric_never_improves() -> None:
    s = _adaptive(initial_T_0=50, patience=2)
    # nan is a miss, never a best: 1.0 is the first best, then nan and -inf are two misses
    assert [s.observe({"eval_loss": v}) for v in (math.nan, 1.0, math.nan, -math.inf)] == [False] * 3 + [True]
    assert s.observe({"eval_loss": torch.tensor(0.5)}) is False  # 0-d tensors and numpy scalars are numbers


def test_step_with_metrics_records_then_steps_like_observe_then_step() -> None:
    evals = {3: 1.0, 4: 1.1, 5: 1.2, 9: 2.0, 20: 1.0, 22: 1.2, 24: 1.5}  # extends at 5 and at 24 (last step of cycle 1)
    seed, trainer = _adaptive(initial_T_0=10, patience=2), _adaptive(initial_T_0=10, patience=2)
    seed_trace, trainer_trace = [], []
    for t in range(40):
        seed.optimizer.step()
        seed.step(metrics={"eval_loss": evals[t]} if t in evals else None)
        seed_trace.append(_snapshot(seed))
        if t in evals:
            trainer.observe({"eval_loss": evals[t]})
        trainer.optimizer.step()
        trainer.step()
        trainer_trace.append(_snapshot(trainer))
    assert seed_trace == trainer_trace and seed.num_extensions == trainer.num_extensions == 2
    assert seed.recent_cycles[:2] == (RealisedCycle(0, 0, 15, 1), RealisedCycle(1, 15, 15, 1))


STOP_AT = [3, 16, 17, 18, 25, 41, 43, 90]  # before, at and after the extension, mid-extension, later cycles


@pytest.mark.parametrize("stop_at", STOP_AT)
def test_state_round_trip_with_weights_only_gives_the_same_future(stop_at: int) -> None:
    kwargs = dict(
        initial_T_0=10,
        T_mult=2,
        warmup_steps=2,
        eta_min=1e-3,
        lr_decay=0.9,
        restart_warmup_steps=2,
        patience=2,
        extension_factor=1.5,
        cycle_limit=4,
    )
    evals = {15: 1.0, 16: 1.5, 17: 1.2, 44: 3.0, 45: 2.0, 50: 2.5, 55: 2.6}
    reference = _drive(_adaptive((0.1, 0.05), **kwargs), 130, evals)
    assert sum(bool(row[-1]) for row in reference) == 2

    first = _adaptive((0.1, 0.05), **kwargs)
    head = _drive(first, stop_at, evals)
    buffer = io.BytesIO()
    torch.save({"scheduler": first.state_dict(), "optimizer": first.optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # what the Trainer and Accelerate do

    resumed = _adaptive((0.1, 0.05), **kwargs)
    resumed.optimizer.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["scheduler"])
    assert resumed.state_dict() == first.state_dict() and resumed.recent_cycles == first.recent_cycles
    assert head + _drive(resumed, 130, evals) == reference


@st.composite
def _adaptive_runs(draw: st.DrawFn) -> tuple[dict, dict[int, float], int]:
    T_0 = draw(st.integers(1, 12))
    kwargs = dict(
        initial_T_0=T_0,
        T_mult=draw(st.sampled_from([1.0, 1.5, 2.0])),
        warmup_steps=draw(st.integers(0, 4)),
        restart_warmup_steps=draw(st.integers(0, T_0 - 1)),
        lr_decay=draw(st.sampled_from([1.0, 0.7])),
        eta_min=draw(st.sampled_from([0.0, 1e-3])),
        cycle_limit=draw(st.one_of(st.none(), st.integers(1, 5))),
        patience=draw(st.integers(1, 3)),
        extension_factor=draw(st.sampled_from([1.1, 1.5, 2.0])),
        max_extensions_per_cycle=draw(st.integers(0, 3)),
    )
    every = draw(st.integers(1, 6))
    values = draw(st.lists(st.integers(0, 4).map(float), min_size=120, max_size=120))
    return kwargs, {t: values[t] for t in range(draw(st.integers(0, 5)), 120, every)}, draw(st.integers(0, 119))


@settings(max_examples=60, deadline=None)
@given(run=_adaptive_runs())
def test_property_lrs_come_from_the_realised_position_and_the_state_round_trips(
    run: tuple[dict, dict[int, float], int],
) -> None:
    kwargs, evals, stop_at = run
    s = _adaptive(**kwargs)
    reference = []
    last_end = None
    while s.last_epoch < 120:
        pos = s.position()
        # Right after step(): the lr is the schedule's at the realised position, and the events agree.
        assert s.get_last_lr() == s.schedule.lrs_at(pos, s.base_lrs)
        assert s.is_at_cycle_end() == (s.last_epoch == last_end)
        extended = s.observe({"eval_loss": evals[s.last_epoch]}) if s.last_epoch in evals else None
        pos = s.position()
        if pos.length is not None:
            nominal = s.schedule.cycle_length(pos.cycle)
            assert pos.t_cur < pos.length and nominal <= pos.length
            if s.max_extensions_per_cycle == 0:
                assert pos.length == nominal
            last_end = pos.start + pos.length
        reference.append((*_snapshot(s), extended))
        s.optimizer.step()
        s.step()

    first = _adaptive(**kwargs)
    head = _drive(first, stop_at, evals)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = _adaptive(**kwargs)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert head + _drive(resumed, 120, evals) == reference


def test_state_dict_holds_plain_python_values_only() -> None:
    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or type(value) in (int, float, bool, str)

    s = _adaptive(initial_T_0=5, patience=1, max_cycle_length=9)
    _drive(s, 8, {1: numpy.float64(1.0), 2: torch.tensor(2.0), 7: 3.0})
    mid_cycle = s.state_dict()["adaptive"]
    assert plain(mid_cycle) and type(mid_cycle["best"]) is float and mid_cycle["cycle_length"] == 9  # 5 -> 8 -> 9
    _drive(s, 12)
    state = s.state_dict()
    assert plain(state) and state["adaptive"]["recent_cycles"] == [[0, 0, 9, 2]]


def test_loading_checks_the_state_and_lets_the_saved_settings_win() -> None:
    saved = _adaptive(initial_T_0=5, patience=4).state_dict()
    other = _adaptive(initial_T_0=5, patience=2)
    with pytest.warns(SGDRWarning, match="saved AdaptiveSGDR settings"):
        other.load_state_dict(saved)
    assert other.patience == 4
    with pytest.raises(ValueError, match="not saved by AdaptiveSGDR"):
        other.load_state_dict(SGDRScheduler(_optimizer(), T_0=5).state_dict())


def _structure(value: object) -> object:
    """The shape of a state: keys, container lengths and leaf types, not the numbers' values."""
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_structure(v) for v in value]
    return type(value).__name__


def test_state_is_bounded_over_a_million_cycles() -> None:
    # T_0=2: in the first five cycles of each thousand, an evaluation at the step inside the cycle sets
    # the best and a second one misses (patience 1): an extension to 3 steps. Within a cycle the
    # drive jumps to the last step (nothing in the state depends on the steps in between).
    s = _adaptive(initial_T_0=2, patience=1, extension_factor=1.5, max_extensions_per_cycle=1)
    s.optimizer.step()
    structures, sizes = [], []
    done = end = 0
    for total in (10, 1_000_000):
        for cycle in range(done, total):
            end += 2
            if cycle % 1000 < 5:
                s.step()
                assert s.observe({"eval_loss": 1.0}) is False and s.observe({"eval_loss": 2.0}) is True
                end += 1
            s.last_epoch = end - 1
            s.step()
        done = total
        assert s.last_epoch == end and s.is_restart_step() and s.current_cycle == total
        state = s.state_dict()
        structures.append(_structure(state))
        sizes.append(len(pickle.dumps(state)))
    assert s.num_extensions == 5 * 1000 and len(s.recent_cycles) == HISTORY_LENGTH
    assert s.recent_cycles[-1] == RealisedCycle(999_999, end - 2, 2, 0)
    assert structures[0] == structures[1]  # same keys, same list lengths: only the integers' widths grow
    assert sizes[1] - sizes[0] <= 4 * 30 and sizes[1] < 2048


def test_optimizer_state_is_reset_at_the_realised_restarts_only() -> None:
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = torch.optim.AdamW([param], lr=0.01)
    s = AdaptiveSGDR(optimizer, 5, patience=1, extension_factor=1.5, reset_optimizer_state=True)
    evals = {1: 1.0, 3: 2.0}  # cycle 0 grows from 5 to 8 steps at step 3
    adam_steps = []
    for t in range(20):
        if t in evals:
            s.observe({"eval_loss": evals[t]})
        optimizer.zero_grad()
        (param**2).sum().backward()
        optimizer.step()
        s.step()
        state = optimizer.state[param]
        adam_steps.append(int(state["step"]))
        if adam_steps[-1] == 0:
            assert s.is_restart_step() and not state["exp_avg"].any() and not state["exp_avg_sq"].any()
    # Restarts at 8, 13, 18 (not at the nominal end 5): the count starts again after each.
    assert adam_steps == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2]
    assert s.num_optimizer_resets == 3


BAD_ARGUMENTS = [
    ({"initial_T_0": 0}, "initial_T_0"),
    ({"initial_T_0": 2.5}, "initial_T_0"),
    ({"patience": 0}, "patience"),
    ({"patience": 1.5}, "patience"),
    ({"extension_factor": 1.0}, "extension_factor"),
    ({"extension_factor": 0.5}, "extension_factor"),
    ({"extension_factor": float("nan")}, "extension_factor"),
    ({"extension_factor": float("inf")}, "extension_factor"),
    ({"max_extensions_per_cycle": -1}, "max_extensions_per_cycle"),
    ({"max_cycle_length": 10}, "max_cycle_length"),
    ({"max_cycle_length": float("inf")}, "max_cycle_length"),
    ({"monitor": ""}, "monitor"),
    ({"monitor": 3}, "monitor"),
    ({"greater_is_better": "maybe"}, "greater_is_better"),
    ({"min_delta": -0.1}, "min_delta"),
    ({"min_delta": float("nan")}, "min_delta"),
    ({"T_mult": 0.5}, "T_mult"),
    ({"eta_min": 0.5}, "eta_min"),  # above the group's lr 0.1
    ({"restart_warmup_steps": 10}, "restart_warmup_steps"),
    ({"reset_optimizer_state": "maybe"}, "reset_optimizer_state"),
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_ARGUMENTS)
def test_bad_input_raises_value_error_naming_the_parameter_and_value(kwargs: dict, name: str) -> None:
    optimizer = _optimizer()
    before = [dict(g) for g in optimizer.param_groups]
    with pytest.raises(ValueError, match=name) as caught:
        AdaptiveSGDR(optimizer, **{"initial_T_0": 10, **kwargs})
    assert "got" in str(caught.value) and "must be" in str(caught.value)
    assert [dict(g) for g in optimizer.param_groups] == before


def test_observe_names_the_missing_metric_and_the_available_ones() -> None:
    s = _adaptive(initial_T_0=10, monitor="eval_f1")
    with pytest.raises(ValueError, match=r"monitor='eval_f1'.*\['eval_accuracy', 'eval_loss'\]"):
        s.observe({"eval_loss": 0.3, "eval_accuracy": 0.9})
    with pytest.raises(ValueError, match="metrics must be a mapping"):
        s.observe(0.3)  # type: ignore[arg-type]
    for value in ("0.3", True, None):
        with pytest.raises(ValueError, match=r"metrics\['eval_f1'\] must be a real number"):
            s.observe({"eval_f1": value})
    with pytest.raises(ValueError, match="monitor='eval_f1'"):
        s.step(metrics={"f1": 0.3})
    assert s.last_epoch == 0  # a refused evaluation does not step
