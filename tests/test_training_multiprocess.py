"""Two CPU processes (gloo) with `SGDRAccelerateHelper`: only the main process writes, both see the same
events, and a write that fails on the main process raises `SnapshotWriteError` on both ranks at the
next sync point instead of leaving the other one waiting.

Launched with ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2`` (``accelerate
launch --cpu`` starts one process). Each rank reports through a JSON file; both processes must also exit
0 within the time limit: no hang, and no abort in the process-group teardown (the script collects the
DDP reference cycle before exiting, as the recipes do).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.training import assert_clean_exit, launch_two_cpu_processes, read_manifest

pytestmark = pytest.mark.multiprocess

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import json, os, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_training_multiprocess import run
run(sys.argv[1], sys.argv[2])
import gc
gc.collect()
"""


def run(out: str, mode: str) -> None:
    """The loop under test, in each of the two processes: 8 optimizer steps, cycles of 2 steps."""
    import torch
    import torch.distributed as dist
    from accelerate import Accelerator
    from helpers.training import byte_lm_data, tiny_gpt2
    from torch.utils.data import DataLoader
    from transformers import default_data_collator

    import hf_sgdr.training.snapshot_recorder as snapshot_recorder
    from hf_sgdr import SGDRScheduler
    from hf_sgdr.training import SGDRAccelerateHelper, SnapshotWriteError

    if mode == "fail":
        real_save = snapshot_recorder.save_weights

        def failing_save(model, folder, weights):
            if "cycle-001" in folder.name:
                raise OSError(28, "No space left on device")
            real_save(model, folder, weights)

        snapshot_recorder.save_weights = failing_save

    accelerator = Accelerator(cpu=True)
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(byte_lm_data(64), batch_size=4, collate_fn=default_data_collator)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = SGDRScheduler(optimizer, T_0=2)
    sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=out)
    outcome = "ok"
    try:
        for batch in loader:
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            sgdr.step(loss=loss)
        sgdr.end()
    except SnapshotWriteError as error:
        outcome = f"SnapshotWriteError: {error}"
    report = {
        "outcome": outcome,
        "num_processes": accelerator.num_processes,
        "global_step": sgdr.global_step,
        "events": [[e.cycle, e.scheduler_step, e.snapshot] for e in sgdr.events],
    }
    Path(out, f"rank{accelerator.process_index}.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


def _launch(tmp_path: Path, mode: str) -> list[dict]:
    out = tmp_path / mode
    out.mkdir()
    script = tmp_path / "loop.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    result = launch_two_cpu_processes(str(script), str(out), mode)
    assert_clean_exit(result)
    reports = sorted(out.glob("rank*.json"))
    assert len(reports) == 2, result.stderr[-3000:]
    return [json.loads(path.read_text()) for path in reports]


def test_two_processes_write_once_and_agree_on_the_events(tmp_path: Path) -> None:
    reports = _launch(tmp_path, "ok")
    assert [r["outcome"] for r in reports] == ["ok", "ok"]
    assert [r["num_processes"] for r in reports] == [2, 2]
    assert reports[0]["events"] == reports[1]["events"]
    assert [e[1] for e in reports[0]["events"]] == [2, 4, 6, 8]  # 64 blocks / (4 x 2 processes) = 8 steps
    manifest = read_manifest(tmp_path / "ok" / "snapshots")
    assert [r.scheduler_step for r in manifest.snapshots] == [2, 4, 6, 8]
    assert manifest.training["num_processes"] == 2


def test_a_failed_write_on_the_main_process_raises_on_every_rank(tmp_path: Path) -> None:
    reports = _launch(tmp_path, "fail")
    for rank, report in enumerate(reports):
        assert report["outcome"].startswith("SnapshotWriteError: writing a snapshot failed on the main process")
        assert "No space left on device" in report["outcome"]
        assert ("reported to rank 1" in report["outcome"]) == (rank == 1)
        assert report["global_step"] == 6  # cycle 1's write failed at step 4; the next sync point is step 6
    assert [r.name for r in read_manifest(tmp_path / "fail" / "snapshots").snapshots] == ["cycle-000"]
