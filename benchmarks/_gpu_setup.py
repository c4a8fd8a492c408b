"""What the parts of `gpu.py` share: the sizes of a full (H200) or `--quick` (CPU) run, the device, timing
that waits for the device, random token data and the GPT-2 models built from a config."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel


@dataclass(frozen=True)
class Sizes:
    """Every size a run uses; `full()` is the issue's setting, `quick()` a CPU run of a few seconds a part."""

    config: dict[str, int]
    steps: int
    batch_size: int
    seq_len: int
    cycles: int
    warmup_steps: int  # of the un-timed run of each arm before the timed ones
    repeats: int  # timed runs of each arm, alternated A B B A ...
    eval_sizes: tuple[int, ...]  # sequences per evaluation
    eval_batch_size: int
    stacked_sequences: int
    stacked_batch_size: int

    @classmethod
    def full(cls) -> Sizes:
        return cls({}, 200, 16, 512, 5, 10, 2, (32, 256), 16, 32, 8)

    @classmethod
    def quick(cls) -> Sizes:
        tiny = {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 64, "vocab_size": 512}
        return cls(tiny, 20, 2, 32, 5, 4, 1, (4, 8), 4, 8, 4)

    def gpt2_config(self) -> GPT2Config:
        """`GPT2Config()` defaults (124M) in a full run; tiny ones in `--quick`."""
        config = GPT2Config(**self.config)
        if self.config:  # the default special tokens lie outside a tiny vocabulary
            config.bos_token_id = config.eos_token_id = config.vocab_size - 1
        return config


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    """Wait for every queued kernel (all streams) so that a time covers the work, not its launch."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def release_memory() -> None:
    """Free what the last run left (garbage, the allocator's cached blocks), so the next starts alike."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def timed(function: object) -> tuple[float, object]:
    """(seconds, result) of `function()`, the device synchronised before and after."""
    synchronize()
    start = time.perf_counter()
    result = function()  # type: ignore[operator]
    synchronize()
    return time.perf_counter() - start, result


def gpt2(sizes: Sizes, seed: int = 0) -> GPT2LMHeadModel:
    """A GPT-2 built from its config (no download), on the CPU."""
    torch.manual_seed(seed)
    return GPT2LMHeadModel(sizes.gpt2_config())


def random_tokens(sizes: Sizes, count: int, seed: int = 0) -> torch.Tensor:
    """[count, seq_len] random token ids (speed does not depend on the text)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, sizes.gpt2_config().vocab_size, (count, sizes.seq_len), generator=generator)
