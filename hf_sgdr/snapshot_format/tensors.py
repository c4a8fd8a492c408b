"""The CPU copy of a model's weights that a snapshot holds, made one way for training and ensembles."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

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
    weights stay tied; `requires_grad` is kept. Parameter subclasses (quantized weights carrying their own state)
    are deep-copied as they are, then moved."""
    if any(type(p) is not nn.Parameter for p in module.parameters()):
        return copy.deepcopy(module).to("cpu")
    memo: dict[int, object] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in memo:
            cpu = tensor.detach().to("cpu", copy=True)
            is_parameter = isinstance(tensor, nn.Parameter)
            memo[id(tensor)] = nn.Parameter(cpu, requires_grad=tensor.requires_grad) if is_parameter else cpu
    return copy.deepcopy(module, memo)


#: Chunks are at least this large, and a power of two (see `packed_host_buffers`).
MIN_CHUNK_BYTES = 64 * 2**20
#: Each buffer starts on this boundary inside its chunk (any dtype's alignment, and a cache line).
BUFFER_ALIGNMENT = 64


def _power_of_two_at_least(size: int) -> int:
    """The smallest power of two >= `size` (1 for 0): the size torch's pinned allocator hands out for `size`."""
    return 1 << max(0, size - 1).bit_length()


def packed_host_buffers(
    state: Mapping[str, torch.Tensor], allocate: Callable[[int], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Host tensors shaped like `state` (tied entries share one), carved out of a few uint8 chunks that
    `allocate(nbytes)` returns, each a power of two in size.

    Why: torch's pinned-memory allocator rounds every request up to a power of two, so one pinned buffer per
    tensor took GPT-2 124M's 498 MB of weights to 827 MB of page-locked memory. Chunks of `max(MIN_CHUNK_BYTES,
    the largest tensor rounded up)` are filled largest tensor first, the last one sized to what it holds. Each
    buffer is a tensor with a storage of its own over part of a chunk: nothing overlaps, and safetensors and
    `save_pretrained` write them as the separate tensors they are. (`allocate` must give CPU memory.)
    """
    unique: dict[tuple[object, ...], torch.Tensor] = {}
    for tensor in state.values():
        if tensor.numel() > 0:
            unique.setdefault(storage_key(tensor), tensor)
    sizes = {key: -(-t.numel() * t.element_size() // BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT for key, t in unique.items()}
    chunk_bytes = max(MIN_CHUNK_BYTES, _power_of_two_at_least(max(sizes.values(), default=0)))
    bins: list[list[tuple[object, ...]]] = []
    used: list[int] = []
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):  # first fit, largest first
        index = next((i for i, filled in enumerate(used) if filled + sizes[key] <= chunk_bytes), len(bins))
        if index == len(bins):
            bins.append([])
            used.append(0)
        bins[index].append(key)
        used[index] += sizes[key]
    buffers: dict[tuple[object, ...], torch.Tensor] = {}
    for keys, filled in zip(bins, used, strict=True):
        memory, offset = allocate(_power_of_two_at_least(filled)).numpy(), 0
        for key in keys:
            tensor = unique[key]
            # A tensor of its own over the chunk's memory (it keeps the chunk alive): a view of the chunk would share
            # its storage, and `save_pretrained` clones every tensor of a storage shared with others before writing.
            buffer = torch.frombuffer(memory, dtype=tensor.dtype, count=tensor.numel(), offset=offset)
            buffers[key] = buffer.view(tensor.shape)
            offset += sizes[key]
    out = {}
    for name, tensor in state.items():
        if tensor.numel() == 0:  # empty tensors share a null address, not memory
            out[name] = allocate(0).view(tensor.dtype).view(tensor.shape)
        else:
            out[name] = buffers[storage_key(tensor)]
    return out
