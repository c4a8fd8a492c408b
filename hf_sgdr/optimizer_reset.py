"""Resetting an optimizer's per-parameter state at a warm restart.

A restart is meant to be a fresh start: the next update should be what a newly built optimizer
would take. Tensors are reset in place (same storage, device and dtype), which keeps fused/foreach
kernels, compiled optimizer steps and offloaded state valid. Only optimizers whose state layout is
known are accepted; anything else is refused up front instead of being silently left alone.
"""

from __future__ import annotations

from typing import Any

import torch

# Optimizer classes whose per-parameter state this module knows how to reset to its fresh value.
SUPPORTED_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.Adamax,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
    torch.optim.Adadelta,
)

# State keys that a fresh optimizer starts at zero.
_ZERO_KEYS = frozenset(
    {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_inf", "square_avg", "acc_delta", "grad_avg"}
)


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The innermost `torch.optim.Optimizer` behind Accelerate's (possibly nested) wrappers."""
    inner = optimizer
    while isinstance(getattr(inner, "optimizer", None), torch.optim.Optimizer):
        inner = inner.optimizer
    return inner


#: Every state key `reset_optimizer_state` knows how to bring back to its fresh value.
_KNOWN_KEYS = _ZERO_KEYS | {"momentum_buffer", "mu_product", "sum"}
#: Attribute of an optimizer on which `check_resettable` keeps its pending first-step check.
_FIRST_STEP_CHECK = "_hf_sgdr_first_step_check"


def check_resettable(optimizer: Any) -> None:
    """Raise `ValueError` unless `reset_optimizer_state` knows this optimizer's state layout.

    The class is checked at once; the state entries too when there are any, else right after the
    first optimizer step (a subclass may keep extra state that only appears there), so that an
    unknown layout stops training at its first step, not at the first restart a cycle later.
    """
    inner = unwrap_optimizer(optimizer)
    if not isinstance(inner, SUPPORTED_OPTIMIZERS):
        names = ", ".join(cls.__name__ for cls in SUPPORTED_OPTIMIZERS)
        raise ValueError(
            f"reset_optimizer_state=True cannot reset the state of {type(inner).__name__}: supported optimizers "
            f"are torch.optim {names} (also behind Accelerate). Use one of them or set reset_optimizer_state=False."
        )
    if inner.state:
        _check_state_entries(inner)
    elif getattr(inner, _FIRST_STEP_CHECK, None) is None:
        setattr(inner, _FIRST_STEP_CHECK, _FirstStepCheck(inner))


class _FirstStepCheck:
    """Checks the state entries after the first optimizer step and once more when the second begins (a
    subclass's overriding `step` may add entries after the post-step hook ran), then does nothing.

    The hooks stay registered (two flag checks a step): removing a hook from inside the optimizer's loop over
    its hooks raises "OrderedDict mutated during iteration" as soon as any other step hook is registered
    (the CUDA snapshot stager registers one).
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.done = False
        optimizer.register_step_post_hook(self._after_step)
        optimizer.register_step_pre_hook(self._before_step)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self.done:
            _check_state_entries(optimizer)

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if optimizer.state and not self.done:
            self.done = True
            setattr(optimizer, _FIRST_STEP_CHECK, None)
            _check_state_entries(optimizer)


def _check_state_entries(inner: torch.optim.Optimizer) -> None:
    """Raise `ValueError` if any parameter's state holds an entry whose fresh value is unknown."""
    unknown = sorted({str(key) for state in inner.state.values() for key in state if key not in _KNOWN_KEYS})
    if unknown:
        raise ValueError(
            f"reset_optimizer_state=True cannot reset the state of {type(inner).__name__}: its state holds "
            f"{', '.join(map(repr, unknown))}, which hf_sgdr does not know how to reset (known entries: "
            f"{', '.join(sorted(_KNOWN_KEYS))}). Use the torch.optim class it derives from, or set "
            "reset_optimizer_state=False."
        )


def _reset_entry(key: str, value: Any, group: dict[str, Any], zeros: list[torch.Tensor]) -> Any:
    """Reset one known state entry where possible in place; return the value the entry must hold after.

    Tensors that a fresh optimizer holds as zeros are appended to `zeros` rather than zeroed one by one: the
    caller zeroes them together (one kernel per device and dtype, not one per state tensor: for AdamW on a
    GPU a restart would otherwise launch two per parameter on the training thread).
    """
    if key == "momentum_buffer":
        if value is None:
            return None
        if group.get("dampening", 0) != 0:
            return None  # SGD re-creates the buffer from the gradient; zeros would scale it by (1 - dampening)
        zeros.append(value)
        return value
    if key == "mu_product":  # NAdam's running product of momentum factors starts at 1
        return value.fill_(1.0) if isinstance(value, torch.Tensor) else 1.0
    if key == "sum":  # Adagrad's accumulator starts at initial_accumulator_value
        return value.fill_(group.get("initial_accumulator_value", 0.0))
    if isinstance(value, torch.Tensor):
        zeros.append(value)
        return value
    return type(value)(0)


def _zero_together(tensors: list[torch.Tensor]) -> None:
    """Zero `tensors` in place, one foreach call per (device, dtype) group (what `zero_grad` does for grads)."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    for group in groups.values():
        torch._foreach_zero_(group)


@torch.no_grad()
def reset_optimizer_state(optimizer: Any) -> int:
    """Reset every parameter's optimizer state to what a fresh optimizer would hold; return how many.

    Works on a plain `torch.optim` optimizer or one wrapped by Accelerate (whose `.state` is the
    inner optimizer's). Hyper-parameters (`param_groups`) are untouched. Every entry is checked before
    any is touched: an unknown layout raises `ValueError` and leaves the state as it was.
    """
    check_resettable(optimizer)
    inner = unwrap_optimizer(optimizer)
    count = 0
    zeros: list[torch.Tensor] = []
    for group in inner.param_groups:
        for param in group["params"]:
            state = inner.state.get(param)
            if not state:
                continue
            for key in list(state):
                new_value = _reset_entry(key, state[key], group, zeros)
                if new_value is None:
                    del state[key]
                else:
                    state[key] = new_value
            count += 1
    _zero_together(zeros)
    return count
