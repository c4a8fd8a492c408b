"""Weights split across processes that no gather joins (tensor parallelism: `DTensor` parameters outside the
Accelerator's FSDP / DeepSpeed) are refused before training when a snapshot, the star restart or SWA needs the
full weights: each process would otherwise save its own part, found out only at the first cycle end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: One process of a one-process group (gloo, CPU): a real `DTensor` from `parallelize_module`.
SCRIPT = """
import json, sys, torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, parallelize_module
from hf_sgdr import SGDRScheduler
from hf_sgdr.training import SGDROptions
from hf_sgdr.training.cycle_end import CycleEndHandler

out = sys.argv[1]
dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=0, world_size=1)
model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
parallelize_module(model, init_device_mesh("cpu", (1,)), {"1": ColwiseParallel()})
results = {}
for label, snapshot_dir, options in [
    ("snapshots", f"{out}/snapshots", SGDROptions()),
    ("star", None, SGDROptions(restart_from="first")),
    ("swa", None, SGDROptions(swa_start=0.5)),
    ("restarts only", None, SGDROptions()),
]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        CycleEndHandler(SGDRScheduler(optimizer, T_0=2), optimizer, model, options=options, snapshot_dir=snapshot_dir)
        results[label] = None
    except ValueError as error:
        results[label] = str(error)
dist.destroy_process_group()
print(json.dumps(results))
"""


def test_split_weights_are_refused_before_training_where_the_full_weights_are_needed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["restarts only"] is None  # schedule, restarts and optimizer resets need no full weights
    for label, use in (("snapshots", "snapshots needs"), ("star", "restart_from='first'"), ("swa", "swa_start=0.5")):
        message = results[label]
        assert message.startswith(use) and "'1.weight' is a DTensor" in message and "save_snapshots=False" in message
    assert not (tmp_path / "snapshots").exists()  # refused before anything was written
