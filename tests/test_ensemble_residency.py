"""Members resident within a budget: the bound, one load per member for every row and split, the same results
as one member at a time; checksums verified in parallel; no transformers loading bar per member."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers.ensembles import copy_folder, sst2_loader, tiny_bert_folder, tiny_lm_folder, wikitext_blocks
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging as hf_logging

import hf_sgdr.snapshot_format.digests as digests
import hf_sgdr.snapshot_format.loading as loading
import hf_sgdr.snapshots.ensemble as ensemble_module
from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotLoadError
from hf_sgdr.snapshots.residency import budget_bytes, free_device_bytes, module_bytes, resident_count


@pytest.fixture(scope="module")
def loaders() -> tuple[object, object]:
    return sst2_loader("validation[:24]"), sst2_loader("train[300:332]")


def _member_bytes(folder: Path) -> int:
    return module_bytes(AutoModelForSequenceClassification.from_pretrained(folder, subfolder="cycle-000"))


def _evaluate(
    folder: Path, loaders: tuple[object, object], budget: int | None, device: str = "cpu"
) -> tuple[SnapshotEnsemble, dict]:
    ensemble = SnapshotEnsemble.from_pretrained(folder, device=device, progress=False, residency_budget=budget)
    report = ensemble.evaluate(*loaders, eval_split="validation", selection_split="train")
    return ensemble, report.to_dict()


@pytest.fixture
def load_counts(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """How often each snapshot folder was loaded (as a module or as a state dict), by folder name."""
    counts: Counter = Counter()
    for name in ("load_model", "load_state_dict"):
        real = getattr(ensemble_module, name)

        def counted(folder: Path, *args: object, _real: object = real, **kwargs: object) -> object:
            counts[Path(folder).name] += 1
            return _real(folder, *args, **kwargs)

        monkeypatch.setattr(ensemble_module, name, counted)
    return counts


@pytest.mark.parametrize(("slots", "kept"), [(2, 0), (3, 1), (5, 4)])
def test_the_budget_bounds_the_resident_models_and_the_results_do_not_change(
    loaders: tuple[object, object], load_counts: Counter, slots: int, kept: int
) -> None:
    folder = tiny_bert_folder()
    _, one_at_a_time = _evaluate(folder, loaders, 0)
    baseline_loads = sum(load_counts.values())
    load_counts.clear()
    ensemble, report = _evaluate(folder, loaders, slots * _member_bytes(folder))
    assert ensemble._runner.resident_members == kept
    # The budget holds `slots` model-sized weight sets; the tracker measures what was alive, it does not assume.
    assert ensemble.resident_models_peak == report["resident_models_peak"] <= slots
    if kept == 4:  # all four resident (the fifth slot holds the soups): each member loaded once for everything
        assert load_counts == {f"cycle-{i:03d}": 1 for i in range(4)} and ensemble._runner.tracker.loads == 4
        assert report["resident_models_peak"] == 5
    else:
        assert sum(load_counts.values()) < baseline_loads or kept == 0
    # Same modules, same data, same operations in the same order: identical bit for bit, not just close.
    assert report["rows"] == one_at_a_time["rows"]


def test_a_resident_causal_lm_matches_one_at_a_time_with_temperatures_and_tied_soups(load_counts: Counter) -> None:
    from torch.utils.data import DataLoader

    blocks = wikitext_blocks()
    eval_loader = DataLoader([{"input_ids": b} for b in blocks[:8]], batch_size=4)
    selection_loader = DataLoader([{"input_ids": b} for b in blocks[8:16]], batch_size=4)
    reports = []
    for budget in (0, 1 << 40):
        load_counts.clear()
        ensemble = SnapshotEnsemble.from_pretrained(tiny_lm_folder(), progress=False, residency_budget=budget)
        report = ensemble.evaluate(eval_loader, selection_loader, temperature_scaling=True, selection_split="other")
        reports.append(report.to_dict())
    names = ensemble.snapshot_names
    assert ensemble._runner.resident_members == len(names)
    soup = ensemble._runner.soup(list(range(len(names))))
    assert soup.lm_head.weight.data_ptr() == soup.transformer.wte.weight.data_ptr()  # tied weights stay tied
    assert load_counts == {name: 1 for name in names}  # every row, both splits, the temperature grid, the soups
    assert reports[0]["rows"] == reports[1]["rows"] and reports[1]["resident_models_peak"] == len(names) + 1


def test_the_default_budget_keeps_none_resident_on_cpu_and_budgets_are_validated() -> None:
    cpu = torch.device("cpu")
    assert budget_bytes(None, cpu) == 0 and budget_bytes(123, cpu) == 123
    assert resident_count(0, 100, 4) == 0 and resident_count(500, 100, 4) == 4 and resident_count(499, 100, 4) == 2
    for bad in (-1, 1.5, 0.0, True, "1GB"):
        with pytest.raises(ValueError, match="residency_budget"):
            SnapshotEnsemble(residency_budget=bad)
    with pytest.raises(ValueError, match="share of free CUDA memory"):
        budget_bytes(0.5, cpu)


def test_parallel_verification_refuses_the_first_corrupted_snapshot_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_folder(tiny_bert_folder(), tmp_path / "snapshots")
    for name in ("cycle-003", "cycle-001"):
        path = folder / name / "model.safetensors"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size: only the digest can tell
        path.write_bytes(bytes(data))
    threads: list[str] = []
    real = digests.sha256_range
    monkeypatch.setattr(
        digests, "sha256_range", lambda *piece: threads.append(threading.current_thread().name) or real(*piece)
    )
    with pytest.raises(SnapshotLoadError, match=r"cycle-001/model\.safetensors is corrupt"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)
    assert threads and all(name.startswith("hf_sgdr-sha256") for name in threads)
    with pytest.raises(SnapshotLoadError, match=r"cycle-003/model\.safetensors is corrupt"):
        SnapshotEnsemble.from_pretrained(folder, snapshots=["cycle-000", "cycle-003"], progress=False)


def test_no_transformers_loading_bar_per_member(
    capfd: pytest.CaptureFixture[str], loaders: tuple[object, object]
) -> None:
    folder = tiny_bert_folder()
    AutoModelForSequenceClassification.from_pretrained(folder, subfolder="cycle-000")
    assert "Loading weights" in capfd.readouterr().err  # transformers itself prints the bar: the check can fail
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    ensemble.evaluate(loaders[0])
    assert ensemble._runner.tracker.loads >= 4
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the switch is restored afterwards


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the default budget keeps members resident only on CUDA")
def test_the_default_budget_on_cuda_keeps_every_member_resident(
    loaders: tuple[object, object], load_counts: Counter
) -> None:
    ensemble, report = _evaluate(tiny_bert_folder(), loaders, None, "cuda")
    assert ensemble._runner.resident_members == 4 and load_counts == {f"cycle-{i:03d}": 1 for i in range(4)}
    _, on_cpu = _evaluate(tiny_bert_folder(), loaders, 0)
    for row, cpu_row in zip(report["rows"], on_cpu["rows"], strict=True):
        # CUDA and CPU kernels sum in different orders: equal to float32 rounding, not bit for bit.
        assert row["members"] == cpu_row["members"]
        assert row["metrics"] == pytest.approx(cpu_row["metrics"], rel=1e-4, abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_default_budget_counts_the_memory_torch_holds_cached_as_free() -> None:
    """After training in the same process, torch's allocator keeps the freed blocks: free to torch, not to the
    driver. The budget counts them."""
    device = torch.device("cuda")
    held = torch.empty(64 * 2**20, dtype=torch.uint8, device=device)
    del held  # back to torch's cache, not to the driver
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    assert cached >= 64 * 2**20
    free, _ = torch.cuda.mem_get_info(device)
    assert free + cached - 2**20 <= free_device_bytes(device) <= free + cached + 2**20
    assert budget_bytes(1.0, device) >= free + 63 * 2**20


def test_member_load_options_put_the_weights_straight_on_an_accelerator_unless_placed_otherwise() -> None:
    """On a GPU the member's weights go to the device as they are read (transformers' device map, which needs
    accelerate), not through a CPU copy moved afterwards; on the CPU, or where the caller places the model itself,
    nothing is added."""
    from transformers.utils import is_accelerate_available

    cuda = torch.device("cuda", 1)
    expected = {"device_map": {"": cuda}} if is_accelerate_available() else {}
    assert loading.device_load_options(cuda, {"dtype": torch.float16}) == expected
    assert loading.device_load_options(torch.device("cpu"), {}) == {}
    for placed in ({"device_map": "auto"}, {"tp_plan": "auto"}):
        assert loading.device_load_options(cuda, placed) == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_a_loaded_member_is_on_the_device_before_it_is_activated(monkeypatch: pytest.MonkeyPatch) -> None:
    devices: list[torch.device] = []
    real = ensemble_module.load_model

    def recorded(folder: Path, *args: object, **kwargs: object) -> torch.nn.Module:
        module = real(folder, *args, **kwargs)
        devices.append(next(module.parameters()).device)
        return module

    monkeypatch.setattr(ensemble_module, "load_model", recorded)
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), device="cuda", progress=False)
    list(ensemble._runner.each(range(ensemble.num_snapshots)))
    assert len(devices) == ensemble.num_snapshots and {d.type for d in devices} == {"cuda"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_member_s_batches_are_queued_without_waiting_for_the_device() -> None:
    """hf_sgdr's own code waits for the device once per member and batch set (the copy of the outputs to the CPU),
    not after every batch. The model is plain torch here: transformers' own checks may wait, which is not ours."""
    import warnings

    from tqdm.auto import tqdm

    from hf_sgdr.snapshots.outputs import Batches, forward_outputs
    from hf_sgdr.snapshots.tasks import task_kind

    class TinyLM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.head = torch.nn.Embedding(50, 16), torch.nn.Linear(16, 50)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(input_ids))

    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 50, (4, 12), generator=generator) for _ in range(3)]
    labels = [row.masked_fill(torch.rand(4, 12, generator=generator) < 0.2, -100) for row in ids]
    batches = Batches([{"input_ids": row} for row in ids], labels)
    model, device = TinyLM().cuda(), torch.device("cuda")
    expected = forward_outputs(model, batches, task_kind("causal_lm"), device, tqdm(disable=True))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outputs = forward_outputs(model, batches, task_kind("causal_lm"), device, tqdm(disable=True))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    waits = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(waits) == 1, waits
    assert torch.equal(outputs, expected) and len(outputs) == sum(int((row[:, 1:] != -100).sum()) for row in labels)
