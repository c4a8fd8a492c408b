"""Host-to-device copies that do not make the host wait for the device."""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`, the copy queued without waiting for the device.

    A CPU tensor bound for a CUDA device is pinned first: a copy from pageable memory is either blocking (torch
    then waits for the whole stream, e.g. the forward pass just queued) or may wait for the stream in the driver;
    from pinned memory `non_blocking=True` only queues it (the pinned block is kept until the copy is done).
    """
    if device.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
