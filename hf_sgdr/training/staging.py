"""Device-to-host copies of a snapshot's weights, off the training thread's critical path (CUDA).

A blocking copy of GPT-2 124M's weights to the host stalled the training thread for 36-318 ms on an H200;
only *launching* it costs about 1 ms. `CudaStager` launches it: host buffers are pinned, allocated once and
reused (the caller passes the previous copy once its write finished); a side stream first waits for the
current stream, so the copy sees the cycle's last optimizer step; the copies run there with
`non_blocking=True` and an event is recorded after them. Whoever reads the host copy (the background
writer, a checkpoint, a star restore) waits for that event (`StagedCopy.wait`), and the next in-place write
of the weights waits for it on the current stream (`fence`): an optimizer step pre-hook, and the star
restore, call it. The copy therefore overlaps the forward and backward passes in between, which only read
the weights. Buffers (BatchNorm statistics are updated in place by a forward) are cloned on the device
first, on the current stream; every source tensor is marked as used by the side stream (`record_stream`),
so that memory freed meanwhile (a finished running average) is not handed out again before the copy read it.

Used only when every tensor is on one CUDA device and the optimizer writes the weights only inside `step()`
(the pre-hook's fence then covers every write); elsewhere (CPU, other devices, weights spread over several,
optimizers that update during backward or swap weights around evaluation) the caller keeps the plain blocking
copy. `torch.distributed.checkpoint`'s stagers are not used:
see ARCHITECTURE.md ("Snapshots on a GPU").
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..optimizer_reset import unwrap_optimizer
from ..snapshot_format.tensors import cpu_copy, packed_host_buffers, storage_key

logger = logging.getLogger(__name__)

#: Packages whose optimizers write the weights only inside `step()`, where the step pre-hook fences the copy.
#: Others may write them elsewhere: during backward (LOMO, GaLore's layer-wise dummy, optimizers applied in
#: backward) or around evaluation (schedule-free `eval()` / `train()`), racing a copy still in flight.
STEP_ONLY_OPTIMIZER_PACKAGES = ("torch.optim", "transformers.optimization", "bitsandbytes.optim", "torchao.optim")


@dataclass
class StagedCopy:
    """A host copy of named tensors and, for a copy still in flight on a CUDA stream, its event."""

    tensors: dict[str, torch.Tensor]
    event: torch.cuda.Event | None = None
    device: torch.device | None = None

    def wait(self) -> None:
        """Block the calling thread until the copy is complete (the host tensors may then be read)."""
        if self.event is not None:
            self.event.synchronize()

    def order_before_current_stream(self) -> None:
        """Make later work on the current stream (e.g. a host-to-device copy of these tensors) wait for it."""
        if self.event is not None:
            torch.cuda.current_stream(self.device).wait_event(self.event)


def writes_weights_only_in_step(optimizer: Any) -> bool:
    """Whether `optimizer` (wrappers allowed) is a torch optimizer that writes the weights only inside `step()`: its
    `step` is defined in one of `STEP_ONLY_OPTIMIZER_PACKAGES` (a subclass that keeps it counts) and it has no
    `eval()` that swaps weights."""
    inner = unwrap_optimizer(optimizer)
    if not isinstance(inner, torch.optim.Optimizer) or callable(getattr(inner, "eval", None)):
        return False
    # The function, not the class holding it: torch wraps `step` into the first instantiated class of each kind.
    module = getattr(inspect.unwrap(type(inner).step), "__module__", "") or ""
    return any(module == name or module.startswith(name + ".") for name in STEP_ONLY_OPTIMIZER_PACKAGES)


class CudaStager:
    """Launches device-to-host copies on a side stream and guards the weights until they are done.

    Args:
        device: The CUDA device the weights live on.
        optimizer: The training optimizer (wrappers allowed); its steps wait for the copies in flight.
    """

    def __init__(self, device: torch.device, optimizer: Any) -> None:
        self.device = device
        #: The side stream the copies run on.
        self.stream = torch.cuda.Stream(device)
        self._in_flight: torch.cuda.Event | None = None
        self._hook = unwrap_optimizer(optimizer).register_step_pre_hook(self._before_optimizer_step)
        self._told_off_device = False

    @staticmethod
    def for_model(model: torch.nn.Module, optimizer: Any) -> CudaStager | None:
        """A stager when all of `model`'s parameters sit on one CUDA device and only the optimizer's `step` writes
        them (its pre-hook then waits for the copies); else `None`: `weights.stage_weights` copies on the training
        thread, blocking (on a CUDA device, logged with the reason)."""
        devices = {p.device for p in model.parameters()}
        if len(devices) != 1 or next(iter(devices)).type != "cuda":
            return None
        if not writes_weights_only_in_step(optimizer):
            logger.info(
                "snapshots are copied on the training thread (blocking): %s may write the weights outside step(), "
                "where a copy in flight would race it; optimizers from %s are copied in the background",
                type(unwrap_optimizer(optimizer)).__name__,
                ", ".join(STEP_ONLY_OPTIMIZER_PACKAGES),
            )
            return None
        return CudaStager(next(iter(devices)), optimizer)

    def handles(self, state: Mapping[str, torch.Tensor]) -> bool:
        """True when every tensor of `state` is on this stager's device; the first time one is not, says which
        (the copy is then blocking)."""
        elsewhere = next((name for name, tensor in state.items() if tensor.device != self.device), None)
        if elsewhere is not None and not self._told_off_device:
            self._told_off_device = True
            logger.info(
                "host copies of the weights are made on the training thread (blocking): %r is on %s, not %s",
                elsewhere,
                state[elsewhere].device,
                self.device,
            )
        return elsewhere is None

    def allocate(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pinned host buffers shaped like `state` (tied entries share one), carved out of a few pinned chunks
        (`packed_host_buffers`: about the weights' size, not the 1.66x of one pinned buffer per tensor), to pass as
        `reuse` to the first `stage`: pinning is slow (about 0.2 s/GB), so it is done once, ahead of the first
        cycle end."""
        return packed_host_buffers(state, _pinned_bytes)

    def stage(
        self,
        state: Mapping[str, torch.Tensor],
        reuse: Mapping[str, torch.Tensor] | None = None,
        volatile: Collection[int] = (),
    ) -> StagedCopy:
        """Launch pinned host copies of `state` (tied entries stay tied) and return them with their event.

        `reuse`: a previous copy nobody reads any more, overwritten in place where names, shapes and dtypes
        match. `volatile`: storage addresses of tensors that a forward may write in place (buffers); these are
        cloned on the device first. The host tensors must not be read before `StagedCopy.wait()`.
        """
        current = torch.cuda.current_stream(self.device)
        clones: dict[tuple[object, ...], torch.Tensor] = {}
        sources = {}
        for name, tensor in state.items():
            if tensor.untyped_storage().data_ptr() in volatile:
                key = storage_key(tensor)
                if key not in clones:
                    clones[key] = tensor.detach().clone()
                tensor = clones[key]
            sources[name] = tensor
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            tensors = cpu_copy(sources, reuse, pin_memory=True, non_blocking=True)
            for tensor in sources.values():
                tensor.record_stream(self.stream)
            # blocking: the writer thread waiting on it sleeps instead of spinning on a CPU core (the data
            # loader workers' and the training thread's) for the whole copy.
            event = torch.cuda.Event(blocking=True)
            event.record(self.stream)
        self._in_flight = event
        return StagedCopy(tensors, event, self.device)

    def fence(self) -> None:
        """Make later work on the current stream wait for the copies in flight: call it before anything writes
        the copied weights in place (the optimizer step does it through its pre-hook)."""
        if self._in_flight is not None:
            torch.cuda.current_stream(self.device).wait_event(self._in_flight)
            self._in_flight = None

    def _before_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.fence()

    def close(self) -> None:
        """Fence what is in flight and remove the optimizer hook."""
        self.fence()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def _pinned_bytes(nbytes: int) -> torch.Tensor:
    """`nbytes` of page-locked host memory (the allocator `packed_host_buffers` carves buffers from)."""
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
