"""The snapshot format layer: one maker of each name, copy and header for the training side and the ensembles."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from helpers.training import tiny_gpt2, training_args
from transformers import Trainer

from hf_sgdr import SGDRCallback, SnapshotEnsemble
from hf_sgdr.snapshot_format import (
    ModelDescription,
    SnapshotManifest,
    describe_model,
    library_versions,
    new_manifest,
    snapshot_name,
)
from hf_sgdr.snapshot_format.layout import is_snapshot_name
from hf_sgdr.snapshot_format.tensors import MIN_CHUNK_BYTES, cpu_copy, cpu_module_copy, packed_host_buffers


def test_snapshot_names_are_made_and_recognised_by_one_rule() -> None:
    assert [snapshot_name(c) for c in (0, 7, 1234)] == ["cycle-000", "cycle-007", "cycle-1234"]
    assert all(is_snapshot_name(snapshot_name(c)) for c in (0, 999, 1000))
    assert not any(is_snapshot_name(n) for n in ("cycle-01", "cycle-000x", ".tmp-cycle-000-1-ab", "manifest.json"))


def test_the_cpu_copy_keeps_tied_weights_tied_and_empty_tensors_apart() -> None:
    shared = torch.arange(6.0).reshape(2, 3)
    state = {
        "a": shared,
        "b": shared,  # tied
        "view": shared[1],  # a view of other memory: its own copy
        "e1": torch.empty(0),
        "e2": torch.empty(0, dtype=torch.int64),
    }
    copy = cpu_copy(state)
    assert copy["a"] is copy["b"] and copy["a"].data_ptr() != shared.data_ptr()
    assert copy["view"] is not copy["a"] and torch.equal(copy["view"], shared[1])
    assert copy["e1"] is not copy["e2"] and copy["e2"].dtype == torch.int64
    shared.add_(1.0)
    assert float(copy["a"][0, 0]) == 0.0  # a copy, not a view of the training weights


def test_the_cpu_module_copy_is_a_separate_model_with_its_ties_and_frozen_weights() -> None:
    """What an ensemble keeps of a model it is given: made tensor by tensor on the CPU (never a second copy on the
    model's device), the module structure deep-copied around them."""
    model = tiny_gpt2().eval()
    model.transformer.wpe.weight.requires_grad_(False)
    copy = cpu_module_copy(model)
    assert copy.lm_head.weight is copy.transformer.wte.weight  # tied
    assert not copy.transformer.wpe.weight.requires_grad and copy.transformer.wte.weight.requires_grad
    assert all(isinstance(p, torch.nn.Parameter) for p in copy.parameters())
    model_ptrs = {t.data_ptr() for t in (*model.parameters(), *model.buffers())}
    assert not model_ptrs & {t.data_ptr() for t in (*copy.parameters(), *copy.buffers())}
    ids = torch.arange(8).reshape(1, 8)
    torch.testing.assert_close(copy(ids).logits, model(ids).logits, rtol=0, atol=0)
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)
    assert not torch.equal(copy(ids).logits, model(ids).logits)

    class Quantized(torch.nn.Parameter):
        """Stands for a quantized weight class (bitsandbytes' `Params4bit`): kept as it is."""

    linear = torch.nn.Linear(2, 2)
    linear.weight = Quantized(linear.weight.detach().clone())
    kept = cpu_module_copy(linear)
    assert type(kept.weight) is Quantized and torch.equal(kept.weight, linear.weight)
    assert kept.weight.data_ptr() != linear.weight.data_ptr()


class _Chunks:
    """An allocator that records what it was asked for (the stager's is pinned; a CPU test cannot pin)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, nbytes: int) -> torch.Tensor:
        self.sizes.append(nbytes)
        return torch.empty(nbytes, dtype=torch.uint8)


def test_packed_host_buffers_are_separate_tensors_in_power_of_two_chunks(tmp_path: Path) -> None:
    """Snapshot host buffers carved out of chunks: ties stay tied, nothing overlaps, and a snapshot copied into
    them is written and loaded like one of separate tensors (save_pretrained and a bare safetensors file)."""
    from hf_sgdr.training.weights import save_weights

    model = tiny_gpt2().eval()
    state = model.state_dict()
    chunks = _Chunks()
    buffers = packed_host_buffers(state, chunks)
    assert buffers.keys() == state.keys() and buffers["lm_head.weight"] is buffers["transformer.wte.weight"]
    assert all(b.shape == state[n].shape and b.dtype == state[n].dtype for n, b in buffers.items())
    assert len(chunks.sizes) == 1 and chunks.sizes[0] & (chunks.sizes[0] - 1) == 0  # small: one chunk, 2^k bytes
    assert chunks.sizes[0] < MIN_CHUNK_BYTES  # sized to what it holds
    spans = sorted({(b.data_ptr(), b.data_ptr() + b.numel() * b.element_size()) for b in buffers.values()})
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))  # no overlap
    storages = {b.untyped_storage().data_ptr() for b in buffers.values()}
    assert len(storages) == len(spans)  # a storage per buffer (ties: one), as if allocated one by one
    copied = cpu_copy(state, reuse=buffers)  # the copy overwrites the buffers in place
    assert all(copied[name] is buffers[name] for name in state)
    save_weights(model, tmp_path / "pretrained", copied)
    loaded = type(model).from_pretrained(tmp_path / "pretrained")
    assert all(torch.equal(loaded.state_dict()[name], tensor) for name, tensor in state.items())
    plain = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    plain_buffers = packed_host_buffers(plain.state_dict(), _Chunks())
    (tmp_path / "plain").mkdir()
    save_weights(plain, tmp_path / "plain", cpu_copy(plain.state_dict(), reuse=plain_buffers))
    from safetensors.torch import load_file

    written = load_file(str(tmp_path / "plain" / "model.safetensors"))
    assert all(torch.equal(written[name], tensor) for name, tensor in plain.state_dict().items())


def test_packed_host_buffers_take_a_little_more_than_the_weights_where_one_per_tensor_took_two_thirds_more() -> None:
    """GPT-2 124M (498 MB of weights in fp32): torch's pinned allocator rounds each request up to a power of two, so
    one buffer per tensor asked for 827 MB; the packed chunks ask for 537 MB."""
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        skeleton = GPT2LMHeadModel(GPT2Config())
    tensors = {**dict(skeleton.named_parameters(remove_duplicate=False)), **dict(skeleton.named_buffers())}
    real = {id(t): torch.empty(t.shape, dtype=t.dtype) for t in tensors.values()}  # a tied parameter: one tensor
    state = {name: real[id(t)] for name, t in tensors.items()}
    unique = {t.data_ptr(): t.numel() * t.element_size() for t in state.values()}
    weights = sum(unique.values())
    one_per_tensor = sum(1 << (size - 1).bit_length() for size in unique.values())
    chunks = _Chunks()  # not touched: no memory is used
    packed_host_buffers(state, chunks)
    assert 497e6 < weights < 499e6 and one_per_tensor / weights > 1.6
    assert sum(chunks.sizes) == 512 * 2**20  # two chunks of 256 MiB (the largest tensor, wte, is 154 MB)


def test_the_ensembles_copy_of_a_tied_model_keeps_one_tensor() -> None:
    ensemble = SnapshotEnsemble(device="cpu", progress=False)
    ensemble.add_model(tiny_gpt2())
    state = ensemble._members[0].state
    assert state["lm_head.weight"] is state["transformer.wte.weight"]


def test_both_sides_build_the_same_manifest_header(tmp_path: Path) -> None:
    """A run's manifest (training side) and an ensemble's (`SnapshotEnsemble.manifest`) of the same model
    record the same header fields and the same libraries."""
    model = tiny_gpt2()
    data = [{"input_ids": [i % 50] * 8, "labels": [i % 50] * 8} for i in range(16)]
    args = training_args(tmp_path, lr_scheduler_type="sgdr", max_steps=4, per_device_train_batch_size=4)
    trainer = Trainer(
        model=model, args=args, train_dataset=data, callbacks=[SGDRCallback(snapshot_dir=str(tmp_path / "snaps"))]
    )
    trainer.train()
    written = SnapshotManifest.load(tmp_path / "snaps")
    ensemble = SnapshotEnsemble.from_pretrained(tmp_path / "snaps", device="cpu", progress=False)
    rebuilt = ensemble.manifest()
    in_memory = SnapshotEnsemble(device="cpu", progress=False)
    in_memory.add_model(model)
    fresh = in_memory.manifest()
    header = ("snapshot_type", "auto_class", "base_model")
    assert [getattr(written, k) for k in header] == [getattr(rebuilt, k) for k in header]
    assert [getattr(fresh, k) for k in header] == [getattr(written, k) for k in header]
    assert (written.snapshot_type, written.auto_class) == ("full_model", "AutoModelForCausalLM")
    assert rebuilt.library_versions == written.library_versions  # a loaded ensemble keeps the run's provenance
    assert set(fresh.library_versions) == set(written.library_versions) == set(library_versions())
    assert written.library_versions.keys() >= {"hf_sgdr", "torch", "transformers", "accelerate", "safetensors"}


def test_new_manifest_keeps_given_provenance() -> None:
    header = describe_model(tiny_gpt2())
    assert header == ModelDescription("full_model", "AutoModelForCausalLM", None, "text-generation")
    kept = new_manifest(header, schedule=None, training={"loop": "x"}, trained_with={"hf_sgdr": "0.0.1"})
    assert kept.library_versions == {"hf_sgdr": "0.0.1"} and kept.training == {"loop": "x"}
    assert new_manifest(header, schedule=None, training={}).library_versions == library_versions()


def _imported_modules(path: Path, *, anywhere: bool = False) -> set[str]:
    """The `hf_sgdr` subpackages a module imports at module level, or `anywhere` (inside functions and
    `TYPE_CHECKING` blocks too)."""
    import ast

    package = path.parent.name
    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree) if anywhere else tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = [package] if node.level == 1 else []
            found.add(".".join([*parts, *(node.module or "").split(".")][:1]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hf_sgdr."):
            found.add(node.module.split(".")[1])
    return found


def test_the_layers_import_downwards_only() -> None:
    """The format imports neither side; the training glue never imports the ensembles (the ensembles take a
    trainer's run: `hf_sgdr.snapshots.trainer_runs`)."""
    root = Path(__file__).resolve().parents[1] / "hf_sgdr"
    for module in (root / "snapshot_format").glob("*.py"):
        assert not _imported_modules(module) & {"training", "snapshots"}, module.name
    for module in (root / "training").glob("*.py"):
        assert "snapshots" not in _imported_modules(module, anywhere=True), module.name
