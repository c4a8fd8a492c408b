"""A stacked forward of K same-architecture members (`torch.func.stack_module_state` + `vmap` over
`functional_call`) against K sequential forwards: is it faster, and is it the same?

Used by `gpu.py` (and its `--quick` CPU run) to decide whether the ensemble should stack its members. Two
conditions make it correct: the members share one architecture, and nothing random runs (eval mode, no
dropout). One trap, measured: `stack_module_state` keeps one name per tied tensor (GPT-2's `lm_head.weight`
is `transformer.wte.weight`), and the meta-device copy that `functional_call` runs must be re-tied, or the
output head silently computes with other weights (logits off by up to 1.25 here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from _gpu_setup import timed


def stacked_forward(models: Sequence[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function of input ids giving the K members' logits stacked on dim 0, in one vmapped call."""
    params, buffers = stack_module_state(list(models))
    base = copy.deepcopy(models[0]).to("meta")
    if hasattr(base, "tie_weights"):
        base.tie_weights()  # the meta copy's ties are the members' ties (see the module docstring)

    def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (ids,)).logits

    batched = vmap(one, in_dims=(0, 0, None))
    return lambda ids: batched(params, buffers, ids)


def sequential_forward(models: Sequence[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same, one member after the other."""
    return lambda ids: torch.stack([model(input_ids=ids).logits for model in models])


@torch.inference_mode()
def compare(models: Sequence[nn.Module], batches: Sequence[torch.Tensor], device: torch.device) -> dict[str, Any]:
    """Seconds of each way over `batches` (after one un-timed batch each), and their largest logit difference."""
    models = [model.to(device).eval() for model in models]
    batches = [batch.to(device) for batch in batches]
    ways = {"sequential": sequential_forward(models), "stacked": stacked_forward(models)}
    difference = (ways["stacked"](batches[0]) - ways["sequential"](batches[0])).abs().max().item()
    seconds = {name: timed(lambda f=forward: [f(batch) for batch in batches])[0] for name, forward in ways.items()}
    return {
        "members": len(models),
        "batches": len(batches),
        "batch_shape": list(batches[0].shape),
        "seconds": seconds,
        "stacked_over_sequential": seconds["stacked"] / seconds["sequential"],
        "max_abs_logit_difference": difference,
    }
