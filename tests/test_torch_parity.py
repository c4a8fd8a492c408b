"""What exactly holds between our lrs and torch's `CosineAnnealingWarmRestarts` (docs/schedule.md, "bit for bit"):

- float lrs: equal bit for bit, for integer `T_mult`, `lr_decay=1`, no warmup (both compute in float64);
- tensor lrs (`torch.tensor(lr)`, float32 in the param group): torch computes the cosine in float32, we round
  the exact float64 value once, so with `eta_min > 0` some steps differ by one float32 ulp; ours is then never
  farther from the exact value than torch's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_sgdr import SGDRScheduler

STEPS = 200


def _lrs(make: type, lr: float | torch.Tensor, **kwargs: object) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make(optimizer, **kwargs)
    out = []
    for _ in range(STEPS):
        optimizer.step()
        scheduler.step()
        value = optimizer.param_groups[0]["lr"]
        out.append(float(value))
    return out


@pytest.mark.parametrize(("T_0", "T_mult", "eta_min"), [(7, 2, 1e-4), (10, 1, 3e-3), (3, 3, 0.0)])
def test_float_lrs_equal_torch_bit_for_bit(T_0: int, T_mult: int, eta_min: float) -> None:
    kwargs = dict(T_0=T_0, T_mult=T_mult, eta_min=eta_min)
    torch_lrs = _lrs(torch.optim.lr_scheduler.CosineAnnealingWarmRestarts, 0.1, **kwargs)
    assert _lrs(SGDRScheduler, 0.1, **kwargs) == torch_lrs


@pytest.mark.parametrize(("T_0", "T_mult", "eta_min"), [(7, 2, 1e-4), (10, 1, 3e-3), (3, 3, 0.0)])
def test_tensor_lrs_are_within_one_ulp_of_torch_and_never_farther_from_the_exact_value(
    T_0: int, T_mult: int, eta_min: float
) -> None:
    kwargs = dict(T_0=T_0, T_mult=T_mult, eta_min=eta_min)
    torch_lrs = np.array(_lrs(torch.optim.lr_scheduler.CosineAnnealingWarmRestarts, torch.tensor(0.1), **kwargs))
    ours = np.array(_lrs(SGDRScheduler, torch.tensor(0.1), **kwargs))
    peak = float(torch.tensor(0.1))  # the float32 peak the tensor holds
    exact = np.array(_lrs(SGDRScheduler, peak, **kwargs))  # float64: the formula's value for that peak
    ulps = np.abs(ours.astype(np.float32).view(np.int32).astype(np.int64) - torch_lrs.astype(np.float32).view(np.int32))
    assert ulps.max() <= 1
    assert np.all(np.abs(ours - exact) <= np.abs(torch_lrs - exact))
    assert np.array_equal(ours, exact.astype(np.float32).astype(np.float64))  # ours: the exact value, rounded once
    if eta_min > 0:
        assert (ulps == 1).any()  # the difference the README states is real, not hypothetical
