"""Making a member (or a soup of members) the model that computes, within a residency budget.

`ModelRunner` keeps as many full-model members on the compute device as the residency budget allows (see
`residency`; on CUDA by default a share of the free memory, on CPU none): a resident member is loaded once
for every row and split. The others are loaded one at a time, each only after releasing the previous one,
while a background thread reads the next member's files (into the page cache) during the current member's
forward passes. Loading (`from_pretrained`) stays on the calling thread: it changes process-global torch
state (the default dtype) while it runs. Safetensors are memory-mapped, so a member costs one model of
memory and nothing is copied twice. A soup is accumulated in one writable module from the members' weights
(read one at a time, or taken from the resident members). `AdapterRunner` holds one base model with every
member's LoRA adapter (adapters are small) and switches between them.

`ResidencyTracker` counts the model-sized weight sets alive (by weak reference), so the bound is
measured, not assumed.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import torch
from torch import nn

from .combine import normalize_weights
from .residency import Budget, budget_bytes, module_bytes, resident_count

StateDict = dict[str, torch.Tensor]
#: The name of the temporary adapter that holds a soup in an `AdapterRunner`.
SOUP_ADAPTER = "hf_sgdr-soup"


class ResidencyTracker:
    """Counts model-sized weight sets that are still alive, through a weak reference to one tensor of each."""

    def __init__(self) -> None:
        self._alive: list[weakref.ref[torch.Tensor]] = []
        self.peak = 0
        self.loads = 0

    def track(self, weights: nn.Module | StateDict) -> None:
        """Count `weights` (a module or a state dict) from now until it is garbage (once, however often tracked)."""
        tensors = list(weights.parameters()) if isinstance(weights, nn.Module) else list(weights.values())
        largest = max(tensors, key=lambda t: t.numel())
        self._alive = [ref for ref in self._alive if ref() is not None]
        if all(ref() is not largest for ref in self._alive):
            self._alive.append(weakref.ref(largest))
        self.peak = max(self.peak, len(self._alive))

    def count_load(self) -> None:
        """One more member materialised from storage."""
        self.loads += 1

    @property
    def resident(self) -> int:
        """How many tracked weight sets are alive now."""
        return sum(ref() is not None for ref in self._alive)


class Runner(Protocol):
    """What evaluation needs: a module, and a way to make a member or a soup of members active in it."""

    tracker: ResidencyTracker

    def module(self) -> nn.Module: ...

    def each(self, indices: Sequence[int]) -> Iterator[int]: ...

    def soup(self, indices: Sequence[int], weights: Sequence[float] | None = None) -> nn.Module: ...


def unique_entries(module: nn.Module) -> list[tuple[tuple[str, ...], torch.Tensor]]:
    """The module's state tensors, one entry per storage with every name that aliases it (tied weights)."""
    groups: dict[tuple[int, tuple[int, ...], torch.dtype], tuple[list[str], torch.Tensor]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        key = (
            (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype) if tensor.numel() else (id(tensor), (), tensor.dtype)
        )
        groups.setdefault(key, ([], tensor))[0].append(name)
    return [(tuple(names), tensor) for names, tensor in groups.values()]


def _source(state: StateDict, names: tuple[str, ...]) -> torch.Tensor:
    for name in names:
        if name in state:
            return state[name]
    raise KeyError(f"the member's weights lack {names[0]!r} (and any tied alias of it)")


def _check_keys(state: StateDict, entries: list[tuple[tuple[str, ...], torch.Tensor]]) -> None:
    known = {name for names, _ in entries for name in names}
    unexpected = sorted(set(state) - known)
    if unexpected:
        raise KeyError(f"the member's weights have keys the model does not: {unexpected[:5]}")


@torch.no_grad()
def copy_state(module: nn.Module, state: StateDict) -> None:
    """Copy `state` into `module`'s tensors in place (tied weights once); keys must match."""
    entries = unique_entries(module)
    _check_keys(state, entries)
    for names, target in entries:
        target.copy_(_source(state, names))


class ModelRunner:
    """Full-model members, resident within `budget` or one at a time (see the module docstring).

    `load_module(i, writable)` returns member i as a module (`writable`: in private memory, not a file
    mapping, because a soup is accumulated in it); `load_state(i)` returns member i's weights;
    `prefetch(i)` (run in a background thread) gets member i's storage ready, e.g. reads its files;
    `budget` is a `residency.Budget` and `members()` the number of members (both for residency only).
    """

    def __init__(
        self,
        load_module: Callable[[int, bool], nn.Module],
        load_state: Callable[[int], StateDict],
        prefetch: Callable[[int], None],
        device: torch.device,
        *,
        budget: Budget = 0,
        members: Callable[[], int] = lambda: 0,
    ) -> None:
        self._load_module = load_module
        self._load_state = load_state
        self._prefetch = prefetch
        self.device = device
        self.budget = budget
        self._members = members
        self.tracker = ResidencyTracker()
        self._module: nn.Module | None = None
        self._resident: dict[int, nn.Module] = {}
        self._keep: int | None = None  # how many members stay resident, decided at the first load
        self._soup_copy: nn.Module | None = None  # the module soups of resident members accumulate in

    @property
    def resident_members(self) -> int:
        """How many members are kept resident now."""
        return len(self._resident)

    def module(self) -> nn.Module:
        """The module of the member (or soup) made active last."""
        if self._module is None:
            raise RuntimeError("no member is active: iterate each() or call soup() first")
        return self._module

    def _activate(self, module: nn.Module) -> nn.Module:
        self._module = module.to(self.device).eval()
        self.tracker.track(self._module)
        return self._module

    def _prefetch_unless_resident(self, index: int) -> None:
        if index not in self._resident:
            self._prefetch(index)

    def _prefetched(self, indices: Sequence[int]) -> Iterator[tuple[int, int]]:
        """(position, index) in order, member `index`'s storage ready and the next one's being prefetched."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf_sgdr-prefetch") as pool:
            pending = pool.submit(self._prefetch_unless_resident, indices[0]) if indices else None
            for position, index in enumerate(indices):
                pending.result()
                if position + 1 < len(indices):
                    pending = pool.submit(self._prefetch_unless_resident, indices[position + 1])
                yield position, index

    def _member(self, index: int) -> nn.Module:
        """Member `index` on the device: resident, or loaded now (and kept while the budget has room)."""
        if index in self._resident:
            return self._activate(self._resident[index])
        module = self._activate(self._load_module(index, False))
        if self._keep is None:
            self._keep = resident_count(budget_bytes(self.budget, self.device), module_bytes(module), self._members())
        if len(self._resident) < self._keep:
            self._resident[index] = module
        return module

    def each(self, indices: Sequence[int]) -> Iterator[int]:
        """Yield each index once its member is `module()`; a member not resident is loaded after the previous
        one not resident was released."""
        for _, index in self._prefetched(indices):
            self._module = None
            self._member(index)
            yield index

    def _soup_base(self, index: int) -> nn.Module:
        """A writable module holding member `index`'s weights: a reused copy when it is resident, else loaded."""
        if index not in self._resident:
            self._soup_copy = None
            return self._activate(self._load_module(index, True))
        source = self._resident[index]
        if self._soup_copy is None:
            self._soup_copy = copy.deepcopy(source)
        else:
            copy_state(self._soup_copy, source.state_dict())
        return self._activate(self._soup_copy)

    @torch.no_grad()
    def soup(self, indices: Sequence[int], weights: Sequence[float] | None = None) -> nn.Module:
        """Make the (weighted) mean of the members' parameters `module()` and return it.

        Floating tensors are averaged (tied weights once); integer buffers (position ids) come from the first.
        The arithmetic is the same whether a member is resident or read again.
        """
        w = normalize_weights(weights, len(indices)).tolist()
        self._module = None
        for position, index in self._prefetched(indices):
            if position == 0:
                entries = unique_entries(self._soup_base(index))
                for _, target in entries:
                    if target.is_floating_point():
                        target.mul_(w[0])
                continue
            state = self._resident[index].state_dict() if index in self._resident else self._load_state(index)
            _check_keys(state, entries)
            for names, target in entries:
                if target.is_floating_point():
                    target.add_(_source(state, names).to(target.device, target.dtype), alpha=w[position])
            del state
        return self.module()


class AdapterRunner:
    """One base model holding every member's LoRA adapter (small); members are switched with `set_adapter`."""

    def __init__(self, model: nn.Module, names: Callable[[], Sequence[str]], device: torch.device) -> None:
        self.model = model
        self._names = names
        self.device = device
        self.tracker = ResidencyTracker()
        self._placed = False

    def module(self) -> nn.Module:
        """The PEFT model on the compute device."""
        if not self._placed:
            self.model.to(self.device).eval()
            self.tracker.track(self.model)
            self._placed = True
        return self.model

    def _activate(self, adapter: str) -> None:
        self.module().set_adapter(adapter, inference_mode=True)

    def each(self, indices: Sequence[int]) -> Iterator[int]:
        """Yield each index once its adapter is the active one."""
        names = self._names()
        for index in indices:
            self._activate(names[index])
            yield index

    def soup(self, indices: Sequence[int], weights: Sequence[float] | None = None) -> nn.Module:
        """Activate an adapter whose update is the (weighted) mean of the members' updates (see `adapters`)."""
        from .adapters import add_averaged_adapter

        model = self.module()
        names = self._names()
        if SOUP_ADAPTER in model.peft_config:
            self._activate(names[0])
            model.delete_adapter(SOUP_ADAPTER)
        chosen = [names[i] for i in indices]
        add_averaged_adapter(model, chosen, normalize_weights(weights, len(chosen)).tolist(), SOUP_ADAPTER)
        self._activate(SOUP_ADAPTER)
        return model
