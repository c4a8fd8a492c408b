"""The CPU copy of a model's weights that a snapshot holds, made one way for training and ensembles."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn


def storage_key(tensor: torch.Tensor) -> tuple[object, ...]:
    """Identifies the memory a tensor views: equal keys for tied weights."""
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.dtype, *tensor.shape, *tensor.stride())


def cpu_copy(
    state: Mapping[str, torch.Tensor],
    reuse: Mapping[str, torch.Tensor] | None = None,
    *,
    pin_memory: bool = False,
    non_blocking: bool = False,
) -> dict[str, torch.Tensor]:
    """Detached CPU copies; entries sharing storage (tied weights) keep sharing it.

    A tensor of `reuse` with the same name, shape and dtype (and pinned, with `pin_memory`) is overwritten
    instead of allocating: writing into memory that was already touched is several times faster than into
    fresh pages. `pin_memory` allocates new copies in page-locked memory, so that device-to-host copies with
    `non_blocking=True` are asynchronous; their values may then be read only once the copy's stream is done.
    """
    copies: dict[tuple[object, ...], torch.Tensor] = {}
    taken: set[int] = set()
    out = {}
    for name, tensor in state.items():
        key = storage_key(tensor)
        if key not in copies or tensor.numel() == 0:  # empty tensors share a null address, not memory
            old = reuse.get(name) if reuse is not None else None
            if (
                old is not None
                and old.shape == tensor.shape
                and old.dtype == tensor.dtype
                and id(old) not in taken
                and (not pin_memory or old.is_pinned())
            ):
                copies[key] = old.copy_(tensor.detach(), non_blocking=non_blocking)
            elif pin_memory:
                fresh = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                copies[key] = fresh.copy_(tensor.detach(), non_blocking=non_blocking)
            else:
                copies[key] = tensor.detach().to("cpu", copy=True)
            taken.add(id(copies[key]))
        out[name] = copies[key]
    return out


def cpu_module_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` with its parameters and buffers on the CPU, made without a second copy on the
    module's device (`copy.deepcopy(module).to("cpu")` would first duplicate a GPU model on the GPU). Tied
    weights stay tied; `requires_grad` is kept."""
    memo: dict[int, object] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in memo:
            cpu = tensor.detach().to("cpu", copy=True)
            is_parameter = isinstance(tensor, nn.Parameter)
            memo[id(tensor)] = nn.Parameter(cpu, requires_grad=tensor.requires_grad) if is_parameter else cpu
    return copy.deepcopy(module, memo)
