"""Weight averaging inside a cycle ("SGDR + SWA"): a running mean over the last part of each cycle.

With `swa_start = f`, the weights after steps `ceil(f * T)` .. `T` of a cycle of length `T`
(1-based, the step that ends the cycle included) enter an equal-weight running mean, the same mean
`torch.optim.swa_utils.AveragedModel` keeps. The fraction is turned into an exact rational first,
so that `0.3 * 10` is 3 and not 3.0000000000000004. The mean restarts with each cycle and whenever
the cycle's length changes under it (an adaptive schedule extended the cycle). Only trainable
floating-point parameters are averaged (frozen ones would equal the current weights anyway), in
float32, on the parameters' device.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import torch

from ..validation import check_float


class CycleAverager:
    """Running mean of a model's trainable weights over the tail of the current cycle."""

    def __init__(self, swa_start: float) -> None:
        self.swa_start = check_float("swa_start", swa_start, minimum=0.0, maximum=1.0, max_open=True)
        self._fraction = Fraction(self.swa_start).limit_denominator(1_000_000)
        self.cycle: int | None = None
        self.length: int | None = None
        self.count = 0
        self.averages: dict[str, torch.Tensor] = {}

    def first_step(self, length: int) -> int:
        """1-based index of the first averaged step in a cycle of `length` steps."""
        return max(1, math.ceil(self._fraction * length))

    def reset(self) -> None:
        """Forget the current mean (at a restart)."""
        self.cycle = self.length = None
        self.count = 0
        self.averages = {}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, cycle: int, length: int, index: int) -> bool:
        """Add the weights after step `index` (1-based) of cycle `cycle` (`length` steps) if inside the window.

        Returns True when the weights were added.
        """
        if (cycle, length) != (self.cycle, self.length):
            self.reset()
            self.cycle, self.length = cycle, length
        if index < self.first_step(length):
            return False
        params = {name: p for name, p in model.named_parameters() if p.requires_grad and torch.is_floating_point(p)}
        self.count += 1
        if not self.averages:
            self.averages = {name: p.detach().to(torch.float32, copy=True) for name, p in params.items()}
            return True
        weight = 1.0 / self.count
        for name, p in params.items():
            average = self.averages[name]
            if average.device != p.device:  # restored from a checkpoint onto the CPU
                average = self.averages[name] = average.to(p.device)
            average.lerp_(p.detach().to(torch.float32), weight)
        return True

    def state_dict(self) -> dict[str, Any]:
        """Plain values and CPU tensors (loadable with `torch.load(..., weights_only=True)`)."""
        return {
            "swa_start": self.swa_start,
            "cycle": self.cycle,
            "length": self.length,
            "count": self.count,
            "averages": {name: t.detach().cpu() for name, t in self.averages.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`; the tensors move to the parameters' device at the next update."""
        if float(state["swa_start"]) != self.swa_start:
            raise ValueError(
                f"the checkpoint averaged from swa_start={state['swa_start']!r} but this run has "
                f"swa_start={self.swa_start!r}; resume with the same swa_start"
            )
        self.cycle, self.length, self.count = state["cycle"], state["length"], int(state["count"])
        self.averages = dict(state["averages"])
