"""Taking a snapshot's weights off the training device, and writing them as a loadable folder.

The copy (`capture_weights`) runs on the training thread and is the only part that stalls it; the
write (`save_weights`) runs in the background on the copy. On a CUDA device `stage_weights` only launches
the copy (`staging.CudaStager`). With an `Accelerator`, its
`get_state_dict` gathers sharded weights (FSDP, DeepSpeed ZeRO-3), so a snapshot always holds the
full model and loads anywhere. For a PEFT model only the tensors its `save_pretrained` keeps (the
adapter and the `modules_to_save`, e.g. a classifier head) are copied.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import PreTrainedModel

from ..snapshot_format.layout import PLAIN_WEIGHTS_NAME
from ..snapshot_format.model_description import is_peft_model, unwrap_model, without_compile
from ..snapshot_format.tensors import cpu_copy, storage_key
from .staging import CudaStager, StagedCopy


def uses_sharded_weights(accelerator: Any) -> bool:
    """True when gathering the full weights is a collective every process must join (FSDP, DeepSpeed)."""
    if accelerator is None:
        return False
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def split_parameter_name(model: torch.nn.Module) -> str | None:
    """The name of a parameter split across processes as a `DTensor` (tensor parallelism, FSDP2), or `None`."""
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return next((name for name, p in unwrap_model(model).named_parameters() if isinstance(p, DTensor)), None)


def join_weight_gather(model: torch.nn.Module, accelerator: Any) -> None:
    """A non-writing process's part of the collective that gathers sharded weights: it must take part,
    but keeps nothing (no CPU copy)."""
    _state_dict(model, accelerator)


#: The name component `torch.compile` adds (to every entry of a compiled module's state dict).
_COMPILE_PREFIX = "_orig_mod."


def _state_dict(
    model: torch.nn.Module, accelerator: Any, unwrapped: torch.nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """The full state dict under the uncompiled model's names (also for regionally compiled submodules).

    Sharded weights are gathered by the `Accelerator` (a collective); otherwise its `get_state_dict` is the
    unwrapped model's `state_dict()`, taken here from `unwrapped` (`unwrap_model(model)`) when the caller has it:
    each unwrap walks every submodule, on the training thread.
    """
    if uses_sharded_weights(accelerator):
        state = accelerator.get_state_dict(without_compile(model), unwrap=True)
    else:
        state = (unwrap_model(model) if unwrapped is None else unwrapped).state_dict()
    return {name.replace(_COMPILE_PREFIX, ""): tensor for name, tensor in state.items()}


def _peft_subset(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of `state` that PEFT's `save_pretrained` keeps, under their original names."""
    from peft import get_peft_model_state_dict

    kept: set[int] = set()
    for adapter in model.peft_config:
        kept.update(id(t) for t in get_peft_model_state_dict(model, state_dict=state, adapter_name=adapter).values())
    subset = {name: tensor for name, tensor in state.items() if id(tensor) in kept}
    # PEFT may hand back transformed tensors for exotic adapters; then keep everything (it filters again).
    return subset if len({id(t) for t in subset.values()}) == len(kept) else state


def _snapshot_state(
    model: torch.nn.Module,
    accelerator: Any,
    replace: Mapping[str, torch.Tensor] | None,
    unwrapped: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """The tensors (on their devices) a snapshot of `model` holds, with `replace` substituted by name
    (`unwrapped`: `unwrap_model(model)`, if the caller has it)."""
    unwrapped = unwrap_model(model) if unwrapped is None else unwrapped
    state = _state_dict(model, accelerator, unwrapped)
    if replace:
        unknown = sorted(set(replace) - set(state))
        if unknown:
            raise KeyError(f"averaged weights {unknown[:3]} are not in the model's state dict")
        aliases: dict[tuple[int, ...], list[str]] = {}
        for name, tensor in state.items():
            aliases.setdefault(storage_key(tensor), []).append(name)
        for name, tensor in replace.items():
            new = tensor.to(state[name].dtype)
            for alias in aliases[storage_key(state[name])]:  # tied weights stay tied
                state[alias] = new
    if state and is_peft_model(unwrapped):
        state = _peft_subset(unwrapped, state)
    return state


@torch.no_grad()
def capture_weights(
    model: torch.nn.Module,
    accelerator: Any = None,
    replace: Mapping[str, torch.Tensor] | None = None,
    reuse: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """CPU copies of the tensors a snapshot of `model` holds (a blocking copy).

    `replace` substitutes entries by name (the running weight average) before copying. `reuse` is a
    previous capture whose tensors nobody reads any more (its write finished): they are overwritten
    in place. Under FSDP or DeepSpeed this is a collective (see `uses_sharded_weights`): the
    processes that do not write call `join_weight_gather` at the same point.
    """
    return cpu_copy(_snapshot_state(model, accelerator, replace), reuse)


def host_buffers(
    model: torch.nn.Module, stager: CudaStager | None, accelerator: Any = None
) -> dict[str, torch.Tensor] | None:
    """Pinned host buffers for `model`'s snapshots, allocated ahead of the first one (`None` without a stager
    or when the weights are not on its device)."""
    if stager is None:
        return None
    state = _snapshot_state(model, accelerator, None)
    return stager.allocate(state) if stager.handles(state) else None


@torch.no_grad()
def stage_weights(
    model: torch.nn.Module,
    stager: CudaStager | None,
    accelerator: Any = None,
    replace: Mapping[str, torch.Tensor] | None = None,
    reuse: Mapping[str, torch.Tensor] | None = None,
) -> StagedCopy:
    """`capture_weights`, launched on `stager`'s side stream into pinned buffers when the tensors are on its
    device (read the copy only after `StagedCopy.wait()`); otherwise the blocking copy, already complete."""
    unwrapped = unwrap_model(model)
    state = _snapshot_state(model, accelerator, replace, unwrapped)
    if stager is None or not stager.handles(state):
        return StagedCopy(cpu_copy(state, reuse))
    volatile = {buffer.untyped_storage().data_ptr() for buffer in unwrapped.buffers()}
    return stager.stage(state, reuse, volatile)


@contextlib.contextmanager
def _without_transformers_progress_bars() -> Iterator[None]:
    """Silence transformers' "Writing model shards" bar: written from the background writer, it would
    cut through the training progress bar at every snapshot (the snapshot has its own log line)."""
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def save_weights(model: torch.nn.Module, folder: Path, weights: dict[str, torch.Tensor]) -> None:
    """Write `weights` into `folder` the way `model` saves itself: `save_pretrained` (config, safetensors;
    the adapter only for PEFT), or a bare `model.safetensors` for any other module. Thread-safe with
    respect to training: the weights are the copies, the model only lends its config and layout.
    """
    model = unwrap_model(model)
    if is_peft_model(model) or isinstance(model, PreTrainedModel):
        with _without_transformers_progress_bars():
            # A copy of the mapping: transformers 5 empties the one it is given, and the next snapshot reuses it.
            model.save_pretrained(folder, state_dict=dict(weights))
        return
    unique: dict[int, str] = {}
    tensors = {}
    for name, tensor in weights.items():
        ptr = tensor.untyped_storage().data_ptr()
        tensors[name] = tensor.clone() if ptr in unique else tensor.contiguous()  # safetensors refuses aliasing
        unique.setdefault(ptr, name)
    save_file(tensors, str(Path(folder) / PLAIN_WEIGHTS_NAME), metadata={"format": "pt"})
