"""Snapshots of a model sharded with FSDP2, on two CPU processes: every snapshot holds the full,
gathered weights (Accelerate's `get_state_dict`), loads into a plain model on one process, and equals
the parameters the two shards made up at the cycle's last step; the optimizer reset reaches the
sharded optimizer state; only the main process writes; weight averaging is refused up front.

The one stand-in: Accelerate only selects FSDP for accelerator devices (a CPU launch is
`DistributedType.MULTI_CPU`), although torch's FSDP2 (`fully_shard`) runs on CPU over gloo. So the
script starts as a plain 2-process CPU launch and switches the shared `AcceleratorState` to FSDP with
a real `FullyShardedDataParallelPlugin(fsdp_version=2)` before `accelerator.prepare`. The sharding
(DTensor parameters and optimizer state), the gather and hf_sgdr's code are the real ones; the same
check on GPUs (NCCL) needs a GPU machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.training import (
    assert_checksums,
    assert_clean_exit,
    launch_two_cpu_processes,
    read_manifest,
    snapshot_weights,
)
from transformers import GPT2LMHeadModel

pytestmark = pytest.mark.multiprocess

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_training_fsdp import run
run(sys.argv[1])
import gc
gc.collect()
"""


def _sharded_optimizer_state_is_fresh(optimizer: torch.optim.Optimizer) -> bool:
    """Every Adam moment of this process's shards is zero and every step count is 0."""
    for state in optimizer.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            if float(state[key].to_local().abs().max()) != 0.0:
                return False
        if float(state["step"]) != 0.0:
            return False
    return True


def run(out: str) -> None:
    """In each of the two processes: a byte-level GPT-2 sharded with FSDP2, 8 optimizer steps, cycles of 2."""
    import torch.distributed as dist
    from accelerate import Accelerator, FullyShardedDataParallelPlugin, PartialState
    from accelerate.utils import DistributedType
    from helpers.training import byte_lm_data, tiny_gpt2
    from torch.utils.data import DataLoader
    from transformers import default_data_collator

    from hf_sgdr import SGDRScheduler
    from hf_sgdr.training import SGDRAccelerateHelper

    accelerator = Accelerator(cpu=True)
    # The stand-in (see the module docstring): what AcceleratorState.__init__ sets up for FSDP on GPUs,
    # the plugin and the distributed type, mirrored into PartialState as Accelerate itself does.
    accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    model = tiny_gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(byte_lm_data(64), batch_size=4, collate_fn=default_data_collator)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    embedding = model.transformer.wte.weight
    report = {
        "fsdp2_after_prepare": accelerator.is_fsdp2,
        "parameter_type": type(embedding).__name__,
        "local_rows": embedding.to_local().shape[0],
        "full_rows": embedding.shape[0],
        "events": [],
        "fresh_after_reset": [],
    }

    averaging = SGDRAccelerateHelper(
        accelerator, model, SGDRScheduler(optimizer, T_0=2), output_dir=out, swa_start=0.5,
        register_for_checkpointing=False,
    )  # fmt: skip
    try:
        averaging.step()
        report["swa_error"] = None
    except ValueError as error:
        report["swa_error"] = str(error)

    scheduler = SGDRScheduler(optimizer, num_cycles=4, num_training_steps=len(loader))  # 8 steps, cycles of 2
    sgdr = SGDRAccelerateHelper(accelerator, model, scheduler, output_dir=out, sgdr_reset_optimizer_state=True)
    for batch in loader:
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        event = sgdr.step(loss=loss)
        if event is None:
            continue
        report["events"].append([event.cycle, event.scheduler_step, event.snapshot, event.optimizer_reset])
        if event.optimizer_reset:
            report["fresh_after_reset"].append(_sharded_optimizer_state_is_fresh(optimizer))
        # What the shards make up right now (a collective: every process takes part).
        full = {name: param.full_tensor().detach().clone() for name, param in model.named_parameters()}
        if accelerator.is_main_process:
            torch.save(full, Path(out, f"expected-{event.cycle}.pt"))
    sgdr.end()
    Path(out, f"rank{accelerator.process_index}.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("fsdp")
    out = root / "out"
    out.mkdir()
    script = root / "loop.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    result = launch_two_cpu_processes(str(script), str(out))
    assert_clean_exit(result)
    reports = [json.loads(path.read_text()) for path in sorted(out.glob("rank*.json"))]
    assert len(reports) == 2, result.stderr[-3000:]
    return out, reports


def test_the_model_was_really_sharded_and_both_ranks_saw_the_same_events(fsdp_run) -> None:
    _, reports = fsdp_run
    for report in reports:
        assert report["fsdp2_after_prepare"] and report["parameter_type"] == "DTensor"
        assert report["local_rows"] == report["full_rows"] // 2  # 256 byte embeddings, half on each rank
    assert reports[0]["events"] == reports[1]["events"]
    assert [e[1] for e in reports[0]["events"]] == [2, 4, 6, 8]


def test_snapshots_hold_the_full_gathered_weights_and_load_on_one_process(fsdp_run) -> None:
    out, _ = fsdp_run
    snapshots = out / "snapshots"
    manifest = read_manifest(snapshots)
    assert [r.name for r in manifest.snapshots] == ["cycle-000", "cycle-001", "cycle-002", "cycle-003"]
    assert sorted(p.name for p in snapshots.iterdir() if p.is_dir()) == [r.name for r in manifest.snapshots]
    assert manifest.training["num_processes"] == 2
    for record in manifest.snapshots:
        assert_checksums(snapshots, record)
        assert snapshot_weights(snapshots / record.name)["transformer.wte.weight"].shape == (256, 64)
        expected = torch.load(out / f"expected-{record.cycle}.pt")
        loaded = GPT2LMHeadModel.from_pretrained(snapshots / record.name)
        assert type(loaded).__name__ == "GPT2LMHeadModel"
        for name, param in loaded.named_parameters():
            assert torch.equal(param, expected[name]), (record.name, name)
    # The weights moved between cycles: each snapshot is its own cycle's, not a copy of one.
    first, last = (torch.load(out / f"expected-{cycle}.pt") for cycle in (0, 3))
    assert not torch.equal(first["transformer.h.0.mlp.c_fc.weight"], last["transformer.h.0.mlp.c_fc.weight"])


def test_the_reset_zeroes_the_sharded_optimizer_state_on_every_rank(fsdp_run) -> None:
    _, reports = fsdp_run
    for report in reports:
        assert [e[3] for e in report["events"]] == [True, True, True, False]  # no restart after the last cycle
        assert report["fresh_after_reset"] == [True, True, True]


def test_weight_averaging_is_refused_with_sharded_weights(fsdp_run) -> None:
    _, reports = fsdp_run
    for report in reports:
        assert "swa_start=0.5 is not supported with sharded weights" in report["swa_error"]
