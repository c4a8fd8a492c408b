"""Layer 2: `SGDRScheduler` as a torch LRScheduler — per-group lrs, events, state round trips."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
import torch

from hf_sgdr import (
    CosineAnnealingWarmRestartsScheduler,
    SGDRSchedule,
    SGDRScheduler,
    SGDRWarning,
    SGDRWithWarmup,
)


def _optimizer(lrs: tuple[float, ...] = (0.1,), cls: type = torch.optim.SGD, **kwargs) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.randn(3))], "lr": lr} for lr in lrs]
    return cls(groups, **kwargs)


def _trace(scheduler: SGDRScheduler, steps: int) -> list[list[float]]:
    out = []
    for _ in range(steps):
        out.append(list(scheduler.get_last_lr()))
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_matches_torch_with_several_param_groups() -> None:
    ours_opt, torch_opt = _optimizer((0.1, 0.01, 0.003)), _optimizer((0.1, 0.01, 0.003))
    ours = SGDRScheduler(ours_opt, T_0=7, T_mult=2, eta_min=1e-4)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(torch_opt, T_0=7, T_mult=2, eta_min=1e-4)
    for step in range(400):
        assert ours.get_last_lr() == theirs.get_last_lr(), step
        assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in torch_opt.param_groups]
        ours_opt.step(), torch_opt.step()
        ours.step(), theirs.step()


def test_events_are_integer_exact_and_follow_the_scheduler_counter() -> None:
    scheduler = SGDRScheduler(_optimizer(), T_0=3, T_mult=2, warmup_steps=2)
    seen = []
    for _ in range(30):
        scheduler.optimizer.step()
        scheduler.step()
        if scheduler.is_at_cycle_end():
            seen.append((scheduler.last_epoch, scheduler.completed_cycle, scheduler.current_cycle))
            assert scheduler.is_restart_step() and scheduler.cycle_position() == 0.0
            assert scheduler.get_last_lr() == [pytest.approx(0.1)]  # the restart value is already visible
        else:
            assert scheduler.completed_cycle is None and not scheduler.is_restart_step()
            assert 0.0 <= scheduler.cycle_position() < 1.0
    assert seen == [(5, 0, 1), (11, 1, 2), (23, 2, 3)]


def test_budget_fit_last_event_is_a_cycle_end_without_restart() -> None:
    scheduler = SGDRScheduler(_optimizer(), num_cycles=3, num_training_steps=50, T_mult=2)
    events = []
    for _ in range(50):
        scheduler.optimizer.step()
        scheduler.step()
        if scheduler.is_at_cycle_end():
            events.append((scheduler.last_epoch, scheduler.is_restart_step()))
    assert events[-1] == (50, False) and [restart for _, restart in events] == [True, True, False]
    assert scheduler.steps_to_next_restart() is None


@pytest.mark.parametrize("stop_at", [1, 6, 7, 13, 29])
def test_resume_mid_cycle_gives_the_same_lrs_as_never_stopping(stop_at: int) -> None:
    kwargs = dict(T_0=7, T_mult=1.5, eta_min=1e-3, lr_decay=0.8, warmup_steps=3, restart_warmup_steps=2)
    reference = _trace(SGDRScheduler(_optimizer((0.1, 0.05)), **kwargs), 60)

    first = SGDRScheduler(_optimizer((0.1, 0.05)), **kwargs)
    head = _trace(first, stop_at)
    buffer = io.BytesIO()
    torch.save({"scheduler": first.state_dict(), "optimizer": first.optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # what the Trainer and Accelerate do

    optimizer = _optimizer((0.1, 0.05))
    resumed = SGDRScheduler(optimizer, **kwargs)
    optimizer.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["scheduler"])
    assert resumed.last_epoch == stop_at
    assert head + _trace(resumed, 60 - stop_at) == reference


def test_state_dict_holds_plain_python_values_only() -> None:
    scheduler = SGDRScheduler(_optimizer(), num_cycles=4, num_training_steps=100, eta_min=1e-5)

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or type(value) in (int, float, bool, str)

    assert plain(scheduler.state_dict())


def test_loading_a_different_saved_schedule_warns_and_uses_the_saved_one() -> None:
    saved = SGDRScheduler(_optimizer(), T_0=5).state_dict()
    other = SGDRScheduler(_optimizer(), T_0=9)
    with pytest.warns(SGDRWarning, match="saved SGDR schedule"):
        other.load_state_dict(saved)
    assert other.schedule == SGDRSchedule(T_0=5)


def test_seed_names() -> None:
    assert CosineAnnealingWarmRestartsScheduler is SGDRScheduler
    seed = CosineAnnealingWarmRestartsScheduler(
        _optimizer(cls=torch.optim.AdamW),
        T_0=10,
        T_mult=2,
        eta_min=1e-6,
        eta_max=0.05,
        lr_decay=0.9,
        warmup_steps=5,
        last_epoch=-1,
        reset_optimizer_state=True,
    )
    assert seed.get_last_lr() == [0.0] and seed.schedule.eta_max == 0.05
    warm = SGDRWithWarmup(_optimizer(), 4, 10, 2, 1e-5, 0.01)
    assert warm.schedule == SGDRSchedule(T_0=10, T_mult=2, eta_min=1e-5, warmup_steps=4, warmup_start_lr=0.01)
    assert warm.get_last_lr() == [pytest.approx(0.01)]


def test_budget_pitfall_warnings_are_issued_once_at_construction() -> None:
    with pytest.warns(SGDRWarning, match="mid-cycle"):
        SGDRScheduler(_optimizer(), T_0=30, num_training_steps=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SGDRScheduler(_optimizer(), num_cycles=4, num_training_steps=100)


def test_tensor_learning_rates_are_updated_in_place() -> None:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.randn(2))], lr=torch.tensor(0.1))
    lr_tensor = optimizer.param_groups[0]["lr"]
    scheduler = SGDRScheduler(optimizer, T_0=4)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] is lr_tensor
    assert float(lr_tensor) == pytest.approx(SGDRSchedule(T_0=4).lr(5, 0.1))


BAD_ARGUMENTS = [
    ({"T_0": 0}, "T_0"),
    ({"T_0": -3}, "T_0"),
    ({"T_0": 2.5}, "T_0"),
    ({"T_0": True}, "T_0"),
    ({"T_0": float("nan")}, "T_0"),
    ({"T_0": 10, "T_mult": 0.5}, "T_mult"),
    ({"T_0": 10, "T_mult": float("inf")}, "T_mult"),
    ({"T_0": 10, "eta_min": -1e-3}, "eta_min"),
    ({"T_0": 10, "eta_min": float("nan")}, "eta_min"),
    ({"T_0": 10, "eta_max": -0.1}, "eta_max"),
    ({"T_0": 10, "eta_max": 0.01, "eta_min": 0.01}, "eta_min"),
    ({"T_0": 10, "eta_min": 0.5}, "eta_min"),  # above the group's lr 0.1
    ({"T_0": 10, "lr_decay": 0.0}, "lr_decay"),
    ({"T_0": 10, "lr_decay": 1.5}, "lr_decay"),
    ({"T_0": 10, "warmup_steps": -1}, "warmup_steps"),
    ({"T_0": 10, "warmup_start_lr": -0.1}, "warmup_start_lr"),
    ({"T_0": 10, "restart_warmup_steps": 10}, "restart_warmup_steps"),
    ({"T_0": 10, "restart_warmup_steps": -1}, "restart_warmup_steps"),
    ({"T_0": 10, "cycle_limit": 0}, "cycle_limit"),
    ({"T_0": 10, "num_cycles": 3, "num_training_steps": 100}, "num_cycles"),
    ({"num_cycles": 3}, "num_training_steps"),
    ({}, "num_training_steps"),
    ({"num_cycles": 200, "num_training_steps": 100}, "num_cycles"),
    ({"num_cycles": 0, "num_training_steps": 100}, "num_cycles"),
    ({"num_cycles": 8, "T_mult": 2.0, "num_training_steps": 100}, "num_training_steps"),
    ({"T_0": 10, "reset_optimizer_state": "maybe"}, "reset_optimizer_state"),
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_ARGUMENTS)
def test_bad_input_raises_value_error_naming_the_parameter_and_leaves_the_optimizer_alone(
    kwargs: dict, name: str
) -> None:
    optimizer = _optimizer()
    before = [dict(g) for g in optimizer.param_groups]
    with pytest.raises(ValueError, match=name) as caught:
        SGDRScheduler(optimizer, **kwargs)
    message = str(caught.value)
    assert "got" in message or "must be" in message or "needs" in message
    assert [dict(g) for g in optimizer.param_groups] == before


def test_reset_with_an_unknown_optimizer_fails_at_construction() -> None:
    from transformers.optimization import Adafactor

    optimizer = Adafactor([torch.nn.Parameter(torch.randn(2))], lr=0.1, relative_step=False, scale_parameter=False)
    with pytest.raises(ValueError, match="cannot reset the state of Adafactor"):
        SGDRScheduler(optimizer, T_0=5, reset_optimizer_state=True)
    SGDRScheduler(optimizer, T_0=5)  # fine without the reset


def test_param_group_added_after_construction_is_scheduled_from_its_own_lr() -> None:
    first, second = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([first], lr=1e-2)
    scheduler = SGDRScheduler(optimizer, T_0=4, eta_min=1e-4, warmup_steps=2)
    schedule = scheduler.schedule
    seen = []
    for t in range(1, 13):
        if t == 3:
            optimizer.add_param_group({"params": [second], "lr": 5e-3})
        optimizer.step()
        scheduler.step()
        seen.append([group["lr"] for group in optimizer.param_groups])
        assert seen[-1][0] == pytest.approx(schedule.lr(t, 1e-2), rel=1e-12)
        if t >= 3:
            assert seen[-1][1] == pytest.approx(schedule.lr(t, 5e-3), rel=1e-12)
    assert scheduler.base_lrs == [1e-2, 5e-3] and optimizer.param_groups[1]["initial_lr"] == 5e-3
    assert scheduler.get_last_lr() == seen[-1]
    restored = SGDRScheduler(optimizer, T_0=4, eta_min=1e-4, warmup_steps=2)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.base_lrs == [1e-2, 5e-3]


def test_param_group_added_below_the_floor_is_refused_by_name() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1e-2)
    scheduler = SGDRScheduler(optimizer, T_0=4, eta_min=1e-3)
    for _ in range(3):
        scheduler.step()
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-3})
    with pytest.raises(
        ValueError,
        match=r"param group 1 \(added with optimizer.add_param_group\): eta_min must be < the initial lr of every "
        r"param group; got eta_min=0.001 >= lr=0.001 of param group 1",
    ):
        scheduler.step()


def test_a_budget_warning_points_at_the_user_s_line_when_the_trainer_builds_the_scheduler(tmp_path: Path) -> None:
    """`Trainer(lr_scheduler_type="sgdr")` builds the scheduler inside transformers: the warning names the line that
    called `train()`, not hf_sgdr's or transformers' internals."""
    from helpers.training import byte_lm_data, tiny_gpt2, training_args
    from transformers import Trainer

    args = training_args(tmp_path, max_steps=4, lr_scheduler_type="sgdr", lr_scheduler_kwargs={"T_0": 4})
    trainer = Trainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    (warning,) = [w for w in caught if issubclass(w.category, SGDRWarning)]
    assert "only 0 restart(s) in 4 steps: warm restarts need several to matter" in str(warning.message)
    assert warning.filename == __file__
