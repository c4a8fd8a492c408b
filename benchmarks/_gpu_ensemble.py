"""Parts (b) and (c) of `gpu.py`, and the stacked-forward comparison, on the training part's snapshots (or, when
that part did not leave any, on K GPT-2 members written with `save_pretrained`).

(c) load + verify: `SnapshotEnsemble.from_pretrained` (every file hashed, the snapshots in parallel threads)
plus putting every member on the device; beside it, the same files hashed on one thread.
(b) `evaluate(soups=False)` (every snapshot, every last-k ensemble) against K forward passes of one resident
model over the same batches: the first call loads the members, later calls find them resident.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM

from _gpu_setup import Sizes, device, gpt2, random_tokens, timed
from _stacked import compare
from hf_sgdr.quiet import transformers_bars_silenced
from hf_sgdr.snapshot_format.digests import sha256_range
from hf_sgdr.snapshot_format.manifest import MANIFEST_NAME
from hf_sgdr.snapshots import SnapshotEnsemble
from hf_sgdr.snapshots.transfer import to_device


def snapshot_folder(work: Path, sizes: Sizes) -> Path:
    """The training part's snapshots, else K members from configs (different seeds) written as a snapshot folder."""
    trained, built = work / "snapshots", work / "built-snapshots"
    for folder in (trained, built):
        if (folder / MANIFEST_NAME).is_file():
            return folder
    print(f"  no snapshots from part (a): writing {sizes.cycles} GPT-2 members to {built}", flush=True)
    ensemble = SnapshotEnsemble(max_snapshots=sizes.cycles, progress=False)
    for seed in range(sizes.cycles):
        ensemble.add_model(gpt2(sizes, seed))
    return ensemble.save_pretrained(built)


def _members_on_device(ensemble: SnapshotEnsemble) -> None:
    for _ in ensemble._runner.each(range(ensemble.num_snapshots)):
        pass


def load_verify(folder: Path) -> dict[str, Any]:
    """Seconds to verify and load every member onto the device (files in the page cache, as after training)."""
    files = sorted(folder.glob("cycle-*/*.safetensors"))
    size = sum(path.stat().st_size for path in files)
    one_thread_s, _ = timed(lambda: [sha256_range(path, 0, path.stat().st_size) for path in files])
    verify_s, ensemble = timed(lambda: SnapshotEnsemble.from_pretrained(folder, device=device(), progress=False))
    load_s, _ = timed(lambda: _members_on_device(ensemble))
    return {
        "members": ensemble.num_snapshots,
        "bytes": size,
        "hash_one_thread_s": one_thread_s,
        "hash_one_thread_gb_s": size / one_thread_s / 1e9,
        "verify_s": verify_s,
        "load_to_device_s": load_s,
        "load_verify_s": verify_s + load_s,
        "resident_members": ensemble._runner.resident_members,
    }


def _k_forwards(model: torch.nn.Module, batches: list[torch.Tensor], k: int) -> None:
    """The baseline: K passes of one resident model, its inputs moved the way `evaluate` moves them (pinned, then
    queued), so that the ratio measures the ensemble and not a slower copy in the baseline."""
    with torch.inference_mode():
        for _ in range(k):
            for batch in batches:
                model(input_ids=to_device(batch, model.device))


def evaluate_vs_forwards(folder: Path, sizes: Sizes, deadline: float) -> dict[str, Any]:
    """For each size: K forwards of one resident model, `evaluate` on a fresh ensemble (loads) and again (resident)."""
    ensemble = SnapshotEnsemble.from_pretrained(folder, device=device(), progress=False)
    k = ensemble.num_snapshots
    with transformers_bars_silenced():
        reference = AutoModelForCausalLM.from_pretrained(folder / ensemble.snapshot_names[-1]).to(device()).eval()
    rows = []
    for count in sizes.eval_sizes:
        if rows and time.monotonic() > deadline:
            print(f"  (b) out of time before {count} sequences", flush=True)
            break
        ids = random_tokens(sizes, count, seed=1)
        loader = DataLoader([{"input_ids": row} for row in ids], batch_size=sizes.eval_batch_size)
        batches = [batch["input_ids"] for batch in loader]
        _k_forwards(reference, batches[:1], 1)  # kernels warm before anything is timed
        forwards_s, _ = timed(lambda b=batches: _k_forwards(reference, b, k))
        evaluate = partial(ensemble.evaluate, loader, soups=False)
        cold_s = None if rows else timed(evaluate)[0]
        warm_s, report = timed(evaluate)
        rows.append(
            {
                "sequences": count,
                "k_forwards_s": forwards_s,
                "evaluate_first_s": cold_s,
                "evaluate_s": warm_s,
                "ratio": warm_s / forwards_s,
                "ratio_first": None if cold_s is None else cold_s / forwards_s,
                "resident_models_peak": report.resident_models_peak,
                "rows": len(report.rows),
            }
        )
        print(f"  (b) {count} sequences: {rows[-1]['ratio']:.2f}x K forwards", flush=True)
    return {"members": k, "sizes": rows}


def stacked(folder: Path, sizes: Sizes) -> dict[str, Any]:
    """The stacked forward against K sequential ones, on the snapshots (see `_stacked`)."""
    names = sorted(path.name for path in folder.glob("cycle-*"))
    with transformers_bars_silenced():
        models = [AutoModelForCausalLM.from_pretrained(folder / name) for name in names]
    ids = random_tokens(sizes, sizes.stacked_sequences, seed=2)
    return compare(models, list(ids.split(sizes.stacked_batch_size)), device())
