"""Cost of one `scheduler.step()`: SGDRScheduler vs torch's CosineAnnealingWarmRestarts vs transformers'
`cosine_with_restarts` LambdaLR, side by side in one process, starting at step 0, 10^6 and 10^9.

    python benchmarks/scheduler_step.py            # full run (about a minute)
    python benchmarks/scheduler_step.py --quick    # CI smoke run (a few seconds)

Prints a Markdown table of microseconds per step (best of the repeats, so other load on the machine
inflates nothing but the spread) and checks that our cost does not grow with the step count.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from transformers import get_cosine_with_hard_restarts_schedule_with_warmup

from hf_sgdr import SGDRScheduler

START_STEPS = (0, 10**6, 10**9)
T_0 = 1000


def _optimizer(groups: int) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 / (i + 1)} for i in range(groups)]
    return torch.optim.SGD(params)


def _at_step(scheduler: torch.optim.lr_scheduler.LRScheduler, start: int) -> torch.optim.lr_scheduler.LRScheduler:
    scheduler.optimizer.step()  # the usual call order, so torch does not warn
    scheduler.last_epoch = start - 1
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts):
        scheduler.step(start)  # its own closed form moves T_cur / T_i to `start`
    else:
        scheduler.step()
    return scheduler


def make_schedulers(T_mult: int, groups: int) -> dict[str, Callable[[], torch.optim.lr_scheduler.LRScheduler]]:
    """Name -> factory of a fresh scheduler with comparable settings."""
    return {
        "hf_sgdr SGDRScheduler": lambda: SGDRScheduler(_optimizer(groups), T_0=T_0, T_mult=T_mult),
        "torch CosineAnnealingWarmRestarts": lambda: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            _optimizer(groups), T_0=T_0, T_mult=T_mult
        ),
        "transformers cosine_with_restarts": lambda: get_cosine_with_hard_restarts_schedule_with_warmup(
            _optimizer(groups), num_warmup_steps=0, num_training_steps=10**10, num_cycles=10**7
        ),
    }


def time_steps(factory: Callable[[], torch.optim.lr_scheduler.LRScheduler], start: int, steps: int, repeats: int):
    """Microseconds per `step()` over `steps` calls from `start`: (best, median) of `repeats`."""
    samples = []
    for _ in range(repeats):
        scheduler = _at_step(factory(), start)
        begin = time.perf_counter()
        for _ in range(steps):
            scheduler.step()
        samples.append((time.perf_counter() - begin) / steps * 1e6)
    return min(samples), statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny run for CI")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    steps, repeats = (2_000, 2) if args.quick else (args.steps, args.repeats)
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {machine}")
    print(f"{steps} steps x {repeats} repeats; microseconds per step (best / median)\n")
    print("| scheduler | T_mult | groups | " + " | ".join(f"from step {s:.0e}" for s in START_STEPS) + " |")
    print("|---|---|---|" + "---|" * len(START_STEPS))
    ours = {}
    for T_mult in (1, 2):
        for groups in (1, 4):
            for name, factory in make_schedulers(T_mult, groups).items():
                cells = []
                for start in START_STEPS:
                    best, median = time_steps(factory, start, steps, repeats)
                    cells.append(f"{best:.2f} / {median:.2f}")
                    if name.startswith("hf_sgdr"):
                        ours[(T_mult, groups, start)] = best
                print(f"| {name} | {T_mult} | {groups} | " + " | ".join(cells) + " |")
    growth = max(ours[(m, g, 10**9)] / ours[(m, g, 0)] for m in (1, 2) for g in (1, 4))
    print(f"\nhf_sgdr cost at step 1e9 vs step 0: at most {growth:.2f}x")


if __name__ == "__main__":
    main()
