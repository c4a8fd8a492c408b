"""Part (a) of `gpu.py`: the stock `Trainer` + `cosine` against `SGDRTrainer` with a snapshot at every cycle end
and optimizer resets, on GPT-2 from a config (bf16 and fused AdamW on a GPU).

Every arm runs once un-timed first (kernels, allocator, the snapshot path), then the timed runs rotate through
the arms so that drift falls on all. Every optimizer step is timed on the training thread, the training stream
waited for (not the side streams a snapshot copy may use); a snapshot's stall is what the steps at and after it
take beyond the median step, less the same for the cosine run at the same steps. `sgdr/snapshot_stall_ms` from
the cycle-end logs is read when the training code reports it.

A third arm, `resets`, is `SGDRTrainer` with the same restarts and optimizer resets but no snapshots. It splits
the stall into what the restart costs (resets against cosine) and what the snapshot costs (sgdr against
resets): on the snapshot's two steps (the hand-off on the training thread) and over the steps after them, while
the background writer runs (its share of the GIL).
"""

from __future__ import annotations

import copy
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState

from _common import arm_trainer
from _gpu_setup import Sizes, device, gpt2, random_tokens, release_memory
from hf_sgdr.snapshot_format.manifest import SnapshotManifest

STALL_KEY = "sgdr/snapshot_stall_ms"


class TokenDataset(torch.utils.data.Dataset):
    """Causal-LM rows of random tokens (labels = inputs)."""

    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


class StepClock(TrainerCallback):
    """Seconds between consecutive optimizer-step ends on the training thread (its stream waited for)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last = 0.0

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.current_stream().synchronize()
        return time.perf_counter()

    def on_step_begin(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not self.times and not self._last:
            self._last = self._now()

    def on_step_end(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        now = self._now()
        self.times.append(now - self._last)
        self._last = now


#: Timed arms: the stock Trainer, SGDR with snapshots, SGDR with the same restarts and resets but no snapshots.
ARMS = ("cosine", "sgdr", "resets")
#: Steps after a snapshot's own two over which the background write's interference is summed.
WRITER_WINDOW = 10


def excess_ms(times: list[float], steps: list[int], window: int = 2, skip: int = 0) -> list[float]:
    """For each 1-based step, the ms that `window` steps, from `skip` steps after it, took beyond the median step."""
    typical = statistics.median(times)
    return [1000 * sum(t - typical for t in times[s - 1 + skip : s - 1 + skip + window]) for s in steps]


def run_arm(
    arm: str, base: torch.nn.Module, sizes: Sizes, data: TokenDataset, out: Path, steps: int, cycles: int
) -> dict[str, Any]:
    """One training run of `arm` (see `ARMS`; the SGDR ones with `cycles` cycles); its wall time, step times and
    logs."""
    on_gpu = device().type == "cuda"
    common = dict(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=sizes.batch_size,
        learning_rate=6e-4,
        bf16=on_gpu,
        optim="adamw_torch_fused" if on_gpu else "adamw_torch",
        use_cpu=not on_gpu,
        report_to="none",
        save_strategy="no",
        logging_steps=10_000,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    shutil.rmtree(out, ignore_errors=True)  # what a run stopped half-way left
    clock = StepClock()
    model = copy.deepcopy(base)
    sgdr = dict(sgdr_num_cycles=cycles, sgdr_reset_optimizer_state=True, save_snapshots=arm != "resets")
    trainer = arm_trainer("cosine" if arm == "cosine" else "sgdr", model, common, data, [clock], **sgdr)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    snapshots = []
    if arm == "sgdr":
        snapshots = [r.global_step for r in SnapshotManifest.load(out / "snapshots").snapshots]
    reported = [log[STALL_KEY] for log in trainer.state.log_history if STALL_KEY in log]
    del trainer, model
    release_memory()
    return {"arm": arm, "seconds": seconds, "step_times": clock.times, "snapshots": snapshots, "reported": reported}


def run(sizes: Sizes, work: Path, deadline: float) -> dict[str, Any]:
    """Warm-up runs, then the timed runs; the last SGDR run's snapshots are kept in `work/snapshots`."""
    base = gpt2(sizes)
    data = TokenDataset(random_tokens(sizes, sizes.steps * sizes.batch_size))
    for arm in ARMS:
        run_arm(arm, base, sizes, data, work / f"warmup-{arm}", sizes.warmup_steps, 2)
        shutil.rmtree(work / f"warmup-{arm}", ignore_errors=True)
    order = [ARMS[i % len(ARMS) :] + ARMS[: i % len(ARMS)] for i in range(sizes.repeats)]
    runs: list[dict[str, Any]] = []
    for group in order:
        if runs and time.monotonic() + len(group) * max(r["seconds"] for r in runs) > deadline:
            print(f"  (a) skipping further repeats: {len(runs)} runs fit the part's budget", flush=True)
            break
        for arm in group:
            runs.append(run_arm(arm, base, sizes, data, work / f"run-{arm}", sizes.steps, sizes.cycles))
            print(f"  (a) {arm}: {runs[-1]['seconds']:.2f} s", flush=True)
    shutil.rmtree(work / "snapshots", ignore_errors=True)
    shutil.move(str(work / "run-sgdr" / "snapshots"), work / "snapshots")
    return summarize(runs)


def _difference_ms(
    runs: list[dict[str, Any]], arm: str, baseline: str, steps: list[int], window: int = 2, skip: int = 0
) -> list[float]:
    """Per step of `steps`, the median over repeats of `arm`'s excess there less `baseline`'s (the runs of the same
    repeat paired in order)."""
    differences = []
    for ran, base in zip([r for r in runs if r["arm"] == arm], [r for r in runs if r["arm"] == baseline], strict=True):
        first = excess_ms(ran["step_times"], steps, window, skip)
        second = excess_ms(base["step_times"], steps, window, skip)
        differences.append([a - b for a, b in zip(first, second, strict=True)])
    return [statistics.median(values) for values in zip(*differences, strict=True)]


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall-time ratio (medians) and per-snapshot stall, measured and as the training code reports it, and the
    stall's parts (restart, snapshot hand-off, background write) where the `resets` arm ran."""
    seconds = {
        arm: [r["seconds"] for r in runs if r["arm"] == arm] for arm in ARMS if any(r["arm"] == arm for r in runs)
    }
    snapshots = next(r["snapshots"] for r in runs if r["arm"] == "sgdr")
    per_snapshot = _difference_ms(runs, "sgdr", "cosine", snapshots)
    median_step = {
        arm: statistics.median(t for r in runs if r["arm"] == arm for t in r["step_times"]) for arm in seconds
    }
    reported = [v for r in runs if r["arm"] == "sgdr" for v in r["reported"]]
    parts = None
    if "resets" in seconds:
        parts = {
            "restart_ms": _difference_ms(runs, "resets", "cosine", snapshots),
            "snapshot_ms": _difference_ms(runs, "sgdr", "resets", snapshots),
            "writer_ms": _difference_ms(runs, "sgdr", "resets", snapshots, WRITER_WINDOW, skip=2),
            "writer_window": WRITER_WINDOW,
            "resets_ratio": statistics.median(seconds["resets"]) / statistics.median(seconds["cosine"]),
        }
    return {
        "seconds": seconds,
        "ratio": statistics.median(seconds["sgdr"]) / statistics.median(seconds["cosine"]),
        "median_step_ms": {arm: 1000 * value for arm, value in median_step.items()},
        "snapshot_steps": snapshots,
        "stall_ms": per_snapshot,
        # The last snapshot ends training: its write is waited for in train() (in the wall time), not a step.
        "max_stall_ms": max(per_snapshot[:-1] or per_snapshot),
        "reported_stall_ms": reported or None,
        "stall_parts": parts,
        "runs": [{k: v for k, v in r.items() if k != "step_times"} for r in runs],
    }
