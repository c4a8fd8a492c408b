"""How many members an ensemble may keep on its compute device: the residency budget.

On a GPU, loading and verifying members costs more than their forward passes (see design.md), so members
that fit stay resident and are loaded once for every row and split. On a CPU the forward passes dominate
and one member at a time costs nothing extra, so the default there keeps none resident.

`residency_budget` (an argument of `SnapshotEnsemble`) is the memory, on the compute device, that the
ensemble's model-sized weight sets may occupy together:

- `None` (default): on CUDA, `DEFAULT_DEVICE_SHARE` of the device's free memory when the first member is
  loaded (`torch.cuda.mem_get_info`, plus what torch's allocator has cached unused); elsewhere 0 (one member
  at a time);
- an int >= 0: that many bytes;
- a float in (0, 1]: that share of the CUDA device's free memory.

A member's size is measured on its first load. With room for `C` weight sets and `K` members: all `K` stay
resident when `C >= K + 1` (the extra one holds soups); otherwise `C - 2` do (one slot for the member being
loaded, one for a soup's second operand), and the rest are loaded one at a time.
"""

from __future__ import annotations

import torch
from torch import nn

#: The share of the free device memory that a default budget takes on CUDA.
DEFAULT_DEVICE_SHARE = 0.5

Budget = int | float | None


def check_residency_budget(budget: Budget) -> Budget:
    """`budget` if valid (see the module docstring), else `ValueError` naming it."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int | float):
        raise ValueError(f"residency_budget must be None, an int of bytes or a float share in (0, 1]; got {budget!r}")
    if isinstance(budget, int) and budget < 0:
        raise ValueError(f"residency_budget in bytes must be >= 0; got {budget}")
    if isinstance(budget, float) and not 0.0 < budget <= 1.0:
        raise ValueError(f"residency_budget as a share of free device memory must be in (0, 1]; got {budget}")
    return budget


def budget_bytes(budget: Budget, device: torch.device) -> int:
    """The budget in bytes on `device` (a share is taken of CUDA's free memory now)."""
    budget = check_residency_budget(budget)
    if isinstance(budget, int):
        return budget
    if device.type != "cuda":
        if budget is None:
            return 0
        raise ValueError(f"residency_budget={budget} is a share of free CUDA memory; on {device} give bytes")
    return int(free_device_bytes(device) * (DEFAULT_DEVICE_SHARE if budget is None else budget))


def free_device_bytes(device: torch.device) -> int:
    """What torch can still hand out on a CUDA device: the driver's free memory plus the blocks torch's caching
    allocator holds unused (after training in the same process, most of what the run used)."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def module_bytes(module: nn.Module) -> int:
    """Bytes of the module's parameters and buffers, each storage once (tied weights once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in module.state_dict().values()}
    return sum(storages.values())


def resident_count(budget: int, member_bytes: int, members: int) -> int:
    """How many of `members` members (each `member_bytes`) stay resident within `budget` bytes."""
    slots = budget // max(1, member_bytes)
    return members if slots >= members + 1 else max(0, min(members, slots - 2))
