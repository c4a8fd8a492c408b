"""Star restarts (`restart_from="first"`, Sadrtdinov et al. 2023): every cycle after the first starts from the
weights at the first cycle's end.

`StarRestart` keeps the trainable weights at the first cycle's end on the host (on a GPU copied on the
snapshot stager's side stream) and puts them back at the first training-mode forward of every later cycle, so
that evaluations and checkpoints taken at a cycle end still see that cycle's own weights. The copy and a
pending restore travel in the training checkpoint (`state_dict`). The optimizer-state reset that star
restarts imply is the scheduler's (`SGDROptions.resets_optimizer_state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..snapshot_format.model_description import unwrap_model
from ..snapshot_format.tensors import cpu_copy
from .staging import CudaStager, StagedCopy


class StarRestart:
    """The first cycle's trainable weights, kept at its end and restored at every later restart.

    Only trainable parameters are kept and restored (the adapter of a LoRA model, all weights of a full
    fine-tune), on every process alike. Call `close()` at the end of training (removes the forward hook).
    """

    def __init__(self, model: torch.nn.Module, stager: CudaStager | None) -> None:
        self.model = model
        self.stager = stager
        #: Host copy of the trainable weights at the first cycle's end.
        self.anchor: StagedCopy | None = None
        #: A restore waiting for the next training forward.
        self.restore_pending = False
        self._hook: Any = _forward_entry(model).register_forward_pre_hook(self._restore_before_training_forward)
        trainable = self._trainable_tensors()
        #: Pinned host buffers for the copy, allocated before training (pinning takes about 0.2 s/GB).
        self._buffers = stager.allocate(trainable) if stager is not None and stager.handles(trainable) else None

    def at_restart(self, cycle: int) -> bool:
        """Cycle `cycle` ended with a restart: keep its weights if it is the first, else schedule the return to
        the first cycle's weights (True then)."""
        if cycle == 0:
            trainable = self._trainable_tensors()
            staged = self.stager is not None and self.stager.handles(trainable)
            self.anchor = self.stager.stage(trainable, self._buffers) if staged else StagedCopy(cpu_copy(trainable))
            return False
        if self.anchor is None or self.anchor.tensors.keys() != self._trainable().keys():
            raise RuntimeError(
                "restart_from='first' has no copy of the first cycle's trainable weights to restart from (the model's "
                "trainable parameters changed, or the run resumed without its checkpoint state)"
            )
        self.restore_pending = True
        return True

    def state_dict(self) -> dict[str, Any]:
        """The kept weights (CPU tensors) and whether a restore is pending."""
        if self.anchor is not None:
            self.anchor.wait()
        return {
            "anchor": self.anchor.tensors if self.anchor is not None else None,
            "restore_pending": self.restore_pending,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict()`."""
        anchor = state.get("anchor")
        if anchor is not None and self._buffers is not None:  # into the pinned buffers: the restore is asynchronous
            anchor = cpu_copy(anchor, self._buffers)
        self.anchor = StagedCopy(dict(anchor)) if anchor is not None else None
        self.restore_pending = bool(state.get("restore_pending", False))

    def close(self) -> None:
        """Remove the forward hook (no restore after training)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in unwrap_model(self.model).named_parameters() if p.requires_grad}

    def _trainable_tensors(self) -> dict[str, torch.Tensor]:
        """The trainable weights as plain tensors (what is copied and kept)."""
        return {n: p.detach() for n, p in self._trainable().items()}

    def _restore_before_training_forward(self, module: torch.nn.Module, args: Any) -> None:
        """Forward pre-hook: put the first cycle's weights back before the first training step of a new cycle."""
        if not (self.restore_pending and module.training):
            return
        assert self.anchor is not None
        if self.stager is not None:
            self.stager.fence()  # a snapshot copy of these weights may still be in flight
        self.anchor.order_before_current_stream()
        with torch.no_grad():
            for name, parameter in self._trainable().items():
                parameter.copy_(self.anchor.tensors[name], non_blocking=True)
        self.restore_pending = False


def _forward_entry(model: torch.nn.Module) -> torch.nn.Module:
    """Where a training forward enters the model: `nn.DataParallel` itself (several GPUs in one process), whose
    replicas are copies broadcast at each forward, so that a restore in their hooks would come a step too late;
    else the unwrapped model (which compiled and distributed wrappers call)."""
    return model if isinstance(model, torch.nn.DataParallel) else unwrap_model(model)
