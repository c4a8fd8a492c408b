"""Relative and per-group floors, transformers' floor names, and a restart warmup that grows with the cycles."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from transformers import get_scheduler

import hf_sgdr  # noqa: F401  (registers "sgdr")
from hf_sgdr import AdaptiveSGDR, SGDRSchedule, SGDRScheduler
from hf_sgdr.training import SGDROptions, SGDRTrainingArguments

LAYER_LRS = (1e-4, 1e-5, 1e-6, 1e-7)  # layer-wise lr decay


def _optimizer(lrs: tuple[float, ...] = LAYER_LRS) -> torch.optim.Optimizer:
    return torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs])


def _trace(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[list[float]]:
    rows = []
    for _ in range(steps):
        rows.append([float(x) for x in scheduler.get_last_lr()])
        scheduler.optimizer.step()
        scheduler.step()
    return rows


def test_a_shared_absolute_floor_is_refused_for_layer_wise_lrs_and_a_relative_one_works() -> None:
    with pytest.raises(ValueError, match=r"eta_min must be < the initial lr of every param group; got eta_min=1e-06 "
                       r">= lr=1e-06 of param group 2"):  # fmt: skip
        SGDRScheduler(_optimizer(), T_0=10, eta_min=1e-6)
    scheduler = SGDRScheduler(_optimizer(), T_0=10, eta_min_ratio=0.1)
    rows = _trace(scheduler, 21)
    for group, peak in enumerate(LAYER_LRS):
        assert rows[0][group] == pytest.approx(peak, rel=1e-12)
        assert rows[10][group] == pytest.approx(peak, rel=1e-12)  # the restart
        floor = 0.1 * peak
        expected_last = floor + (peak - floor) * (1 + math.cos(math.pi * 9 / 10)) / 2
        assert rows[9][group] == pytest.approx(expected_last, rel=1e-12)
        assert min(row[group] for row in rows) > floor


def test_one_floor_per_group() -> None:
    floors = [1e-6, 1e-7, 1e-8, 1e-9]
    rows = _trace(SGDRScheduler(_optimizer(), T_0=10, eta_min=floors), 10)
    for group, (peak, floor) in enumerate(zip(LAYER_LRS, floors, strict=True)):
        assert rows[5][group] == pytest.approx(floor + (peak - floor) * (1 + math.cos(math.pi / 2)) / 2, rel=1e-12)
    with pytest.raises(ValueError, match="eta_min lists 2 floors, one per param group, but there are 4 param groups"):
        SGDRScheduler(_optimizer(), T_0=10, eta_min=floors[:2])
    with pytest.raises(ValueError, match=r"eta_min\[1\] must be a finite number >= 0; got -1"):
        SGDRSchedule(T_0=10, eta_min=[0.0, -1])
    with pytest.raises(ValueError, match=r"give eta_min .* or eta_min_ratio .*, not both"):
        SGDRSchedule(T_0=10, eta_min=1e-6, eta_min_ratio=0.1)
    with pytest.raises(ValueError, match=r"eta_min_ratio must be a finite number in \[0, 1\); got 1"):
        SGDRSchedule(T_0=10, eta_min_ratio=1)
    with pytest.raises(ValueError, match=r"eta_min_ratio must be < the lowest cycle peak factor 0\.5; got 0\.6"):
        SGDRScheduler(_optimizer(), cycles=[[10, 1], [10, 0.5]], eta_min_ratio=0.6)


def test_per_group_floors_and_ratios_survive_a_checkpoint(tmp_path) -> None:
    for kwargs in ({"eta_min": [1e-6, 1e-7, 1e-8, 1e-9]}, {"eta_min_ratio": 0.05, "restart_warmup_ratio": 0.25}):
        first = SGDRScheduler(_optimizer(), T_0=8, T_mult=2, **kwargs)
        _trace(first, 11)
        torch.save(first.state_dict(), tmp_path / "scheduler.pt")
        resumed = SGDRScheduler(_optimizer(), T_0=8, T_mult=2, **kwargs)
        resumed.load_state_dict(torch.load(tmp_path / "scheduler.pt", weights_only=True))
        assert resumed.schedule == first.schedule
        assert _trace(resumed, 20) == _trace(first, 20)
    assert "eta_min_ratio" not in SGDRSchedule(T_0=4).to_dict()  # unset: older readers never see the key


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [({"min_lr": 1e-5}, {"min_lr": 1e-5}), ({"min_lr_rate": 0.1}, {"min_lr_rate": 0.1})],
)
def test_transformers_floor_names_give_cosine_with_min_lr_where_they_coincide(ours, theirs) -> None:
    """One cycle over the budget is transformers' `cosine_with_min_lr`: switching changes the type string (and,
    for one cycle, `num_cycles`)."""
    lrs = (1e-3,) if "min_lr" in ours else (1e-3, 2e-4)  # min_lr is absolute: transformers' rate is per optimizer
    sgdr = get_scheduler(
        "sgdr", _optimizer(lrs), num_warmup_steps=7, num_training_steps=60,
        scheduler_specific_kwargs={**ours, "num_cycles": 1},
    )  # fmt: skip
    stock = get_scheduler(
        "cosine_with_min_lr", _optimizer(lrs), num_warmup_steps=7, num_training_steps=60,
        scheduler_specific_kwargs=theirs,
    )  # fmt: skip
    for ours_row, theirs_row in zip(_trace(sgdr, 60), _trace(stock, 60), strict=True):
        assert ours_row == pytest.approx(theirs_row, rel=1e-9, abs=1e-15)
    with pytest.raises(ValueError, match="sets both 'min_lr' and 'eta_min'"):
        get_scheduler(
            "sgdr",
            _optimizer(),
            num_warmup_steps=0,
            num_training_steps=60,
            scheduler_specific_kwargs={"min_lr": 1, "eta_min": 1},
        )


def test_the_restart_warmup_grows_with_the_cycles() -> None:
    scheduler = SGDRScheduler(_optimizer((1.0,)), T_0=10, T_mult=2, restart_warmup_ratio=0.2, eta_min=0.1)
    rows = [row[0] for row in _trace(scheduler, 70)]
    for start, length in ((10, 20), (30, 40)):
        ramp = math.floor(0.2 * length)  # 4, then 8 steps
        assert rows[start] == pytest.approx(0.1)  # the restart begins at the floor
        assert rows[start : start + ramp] == pytest.approx([0.1 + 0.9 * k / ramp for k in range(ramp)])
        assert rows[start + ramp] == pytest.approx(1.0)  # then the cosine from the peak over the rest
        assert rows[start + ramp + 1] < 1.0
    assert rows[0] == 1.0  # not in the first cycle
    with pytest.raises(ValueError, match="give restart_warmup_steps or restart_warmup_ratio, not both"):
        SGDRSchedule(T_0=10, restart_warmup_steps=2, restart_warmup_ratio=0.1)
    with pytest.raises(TypeError, match=r"AdaptiveSGDR got unknown parameter\(s\) 'restart_warmup_ratio'"):
        AdaptiveSGDR(_optimizer(), 10, restart_warmup_ratio=0.1)


def test_the_new_parameters_reach_every_front_end(tmp_path) -> None:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(SGDRTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--eta_min_ratio", "0.1", "--restart_warmup_ratio", "0.25"]
    )
    assert SGDROptions.sgdr_options(args).scheduler_kwargs() == {"eta_min_ratio": 0.1, "restart_warmup_ratio": 0.25}
    out = subprocess.run(
        [sys.executable, "-m", "hf_sgdr.cli", "describe", "--T_0", "10", "--num_training_steps", "30",
         "--lr", "1e-3", "--eta_min_ratio", "0.1", "--restart_warmup_ratio", "0.3", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    described = json.loads(out)
    assert described["schedule"]["eta_min_ratio"] == 0.1 and described["schedule"]["restart_warmup_ratio"] == 0.3
    assert [c["floor"] for c in described["cycles"]] == pytest.approx([1e-4] * 3)
    per_group = subprocess.run(
        [sys.executable, "-m", "hf_sgdr.cli", "describe", "--T_0", "10", "--num_training_steps", "30",
         "--lr", "1e-3", "1e-4", "--eta_min", "1e-5,1e-6"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "1e-05" in per_group
    refused = subprocess.run(
        [sys.executable, "-m", "hf_sgdr.cli", "describe", "--T_0", "10", "--num_training_steps", "30",
         "--lr", "1e-3", "--eta_min", "1e-5,1e-6"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0 and "eta_min lists 2 floors, one per param group, but there are 1" in refused.stderr
