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

Used only when every tensor is on one CUDA device; elsewhere (CPU, other devices, weights spread over
several) the caller keeps the plain blocking copy. `torch.distributed.checkpoint`'s stagers are not used:
see ARCHITECTURE.md ("Snapshots on a GPU").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..snapshot_format.tensors import cpu_copy, storage_key


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


def innermost_optimizer(optimizer: Any) -> Any:
    """The torch optimizer under wrappers (Accelerate's `AcceleratedOptimizer`): the one whose `step` writes."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


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
        self._hook = innermost_optimizer(optimizer).register_step_pre_hook(self._before_optimizer_step)

    @staticmethod
    def for_model(model: torch.nn.Module, optimizer: Any) -> CudaStager | None:
        """A stager when all of `model`'s parameters sit on one CUDA device and the optimizer's steps can be made
        to wait for the copies (a torch optimizer: step pre-hooks); else `None`: `weights.stage_weights` then copies
        on the training thread, blocking."""
        devices = {p.device for p in model.parameters()}
        hookable = callable(getattr(innermost_optimizer(optimizer), "register_step_pre_hook", None))
        if len(devices) != 1 or not hookable:
            return None
        (device,) = devices
        return CudaStager(device, optimizer) if device.type == "cuda" else None

    def handles(self, state: Mapping[str, torch.Tensor]) -> bool:
        """True when every tensor of `state` is on this stager's device."""
        return all(tensor.device == self.device for tensor in state.values())

    def allocate(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pinned host buffers shaped like `state` (tied entries share one), to pass as `reuse` to the first
        `stage`: pinning is slow (about 0.2 s/GB), so it is done once, ahead of the first cycle end."""
        buffers: dict[tuple[object, ...], torch.Tensor] = {}
        out = {}
        for name, tensor in state.items():
            key = storage_key(tensor)
            if key not in buffers or tensor.numel() == 0:
                buffers[key] = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            out[name] = buffers[key]
        return out

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
