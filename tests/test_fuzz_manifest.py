"""Fuzzing the parsers that read files from other people's repos (hypothesis): the manifest (as JSON values, as
mutations of a real manifest, as raw bytes on disk), the safetensors header check and the shard index.

Only the documented errors may come out: `ManifestError` for a manifest, `SnapshotLoadError` for a snapshot file
(both `ValueError`s). A `KeyError`, `TypeError`, `AttributeError` or `RecursionError` escaping is a bug. What is
accepted must be safe: names stay inside the folder, and the manifest round-trips through `to_dict`.
"""

from __future__ import annotations

import copy
import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_sgdr.snapshot_format.loading import SnapshotLoadError, check_safetensors_header, check_snapshot
from hf_sgdr.snapshot_format.manifest import ManifestError, SnapshotManifest, SnapshotRecord, check_relative_name

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SHA = "ab" * 32
VALID: dict[str, Any] = {
    "format": "hf_sgdr.snapshot_ensemble",
    "format_version": 1,
    "snapshot_type": "full_model",
    "auto_class": "AutoModelForSequenceClassification",
    "base_model": "sentence-transformers/all-MiniLM-L6-v2",
    "task": "sst2",
    "schedule": {"T_0": 4, "T_mult": 2.0, "eta_min": 0.0},
    "training": {"num_training_steps": 12, "learning_rate": 1e-3},
    "library_versions": {"hf_sgdr": "0.1.0", "torch": "2.13.0"},
    "snapshots": [
        {
            "name": "cycle-000",
            "cycle": 0,
            "global_step": 4,
            "scheduler_step": 4,
            "epoch": 0.5,
            "lr": [1e-7],
            "train_loss": 0.7,
            "eval_metrics": {"eval_accuracy": 0.5},
            "averaged": False,
            "num_averaged": None,
            "files": {"config.json": {"sha256": SHA, "size": 10}, "model.safetensors": {"sha256": SHA, "size": 99}},
        },
        {
            "name": "cycle-001",
            "cycle": 1,
            "global_step": 12,
            "scheduler_step": 12,
            "files": {"config.json": {"sha256": SHA, "size": 10}, "model.safetensors": {"sha256": SHA, "size": 99}},
        },
    ],
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["../x", "/etc/passwd", "cycle-000", "a/../b", "full_model", "peft_adapter", SHA, "", "."]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


def _check_accepted(manifest: SnapshotManifest) -> None:
    """What the parser accepts is safe and round-trips."""
    for record in manifest.snapshots:
        check_relative_name(record.name, "name")
        assert all(check_relative_name(name, "file") for name in record.files)
        assert all(f.size >= 0 and len(f.sha256) == 64 for f in record.files.values())
    # Compared as JSON text: a NaN that the format accepts (in `training`, say) is equal to itself there.
    text = json.dumps(manifest.to_dict(), sort_keys=True)
    assert json.dumps(SnapshotManifest.from_dict(json.loads(text)).to_dict(), sort_keys=True) == text


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a JSON value (where a mutation can land)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def test_the_valid_manifest_parses() -> None:
    manifest = SnapshotManifest.from_dict(copy.deepcopy(VALID))
    assert [r.name for r in manifest.snapshots] == ["cycle-000", "cycle-001"]
    _check_accepted(manifest)


def test_a_nan_in_the_training_record_round_trips() -> None:
    """The case that made this file fail now and then: NaN != NaN, though the manifest round-trips."""
    manifest = SnapshotManifest.from_dict({**copy.deepcopy(VALID), "training": {"learning_rate": float("nan")}})
    _check_accepted(manifest)


@PROFILE
@given(data=json_values)
def test_arbitrary_json_raises_only_manifest_errors(data: Any) -> None:
    try:
        manifest = SnapshotManifest.from_dict(data)
    except ManifestError:
        return
    _check_accepted(manifest)  # pragma: no cover (arbitrary JSON is essentially never a manifest)


@PROFILE
@given(choice=st.data(), value=json_values, delete=st.booleans())
def test_mutated_manifests_raise_only_manifest_errors(choice: st.DataObject, value: Any, delete: bool) -> None:
    data = copy.deepcopy(VALID)
    path = choice.draw(st.sampled_from(_paths(data)[1:]))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    try:
        manifest = SnapshotManifest.from_dict(data)
    except ManifestError:
        return
    _check_accepted(manifest)


@given(
    raw=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.builds(lambda n, c: c * n, st.integers(1, 50_000), st.sampled_from([b"[", b'{"a":', b"[[{}"])),
    )
)
@settings(max_examples=200, deadline=None)
def test_manifest_files_of_arbitrary_bytes_raise_only_manifest_errors(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "manifest.json").write_bytes(raw)
        try:
            _check_accepted(SnapshotManifest.load(folder))
        except ManifestError as error:
            assert "manifest.json" in str(error)  # the error names the file


def test_deeply_nested_json_is_a_manifest_error_not_a_recursion_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("[" * 200_000)
    with pytest.raises(ManifestError, match=r"manifest.json is not valid JSON: maximum recursion depth"):
        SnapshotManifest.load(tmp_path)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"T_mult": 2}, "missing 1 required positional argument: 'T_0'"),
        ({"T_0": 4, "T_mul": 2}, r"unknown SGDR schedule parameter\(s\) \['T_mul'\]"),
        ({"T_0": "four"}, r"T_0 must be an integer in \[1, 1e\+09\]; got 'four'"),
        ({"T_0": 4, "eta_min": -1}, "eta_min must be a finite number >= 0"),
    ],
)
def test_a_bad_schedule_is_refused_when_the_manifest_is_read(schedule: dict, message: str) -> None:
    data = copy.deepcopy(VALID)
    data["schedule"] = schedule
    with pytest.raises(ManifestError, match=rf"manifest.schedule is not a valid SGDR schedule: .*{message}"):
        SnapshotManifest.from_dict(data)


# ---------------------------------------------------------------------- safetensors headers and shard indexes
def _safetensors(path: Path, header: bytes, data: bytes) -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


tensor_entries = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.one_of(st.sampled_from(["F32", "F16", "U8", "I64", "BOOL", "X"]), json_values),
        "shape": st.one_of(st.lists(st.integers(-2, 2**40), max_size=4), json_values),
        "data_offsets": st.one_of(st.lists(st.integers(-2, 64), min_size=2, max_size=2), json_values),
    },
)
headers = st.one_of(
    st.dictionaries(st.text(max_size=8), st.one_of(tensor_entries, json_values), max_size=4),
    json_values,
).map(lambda v: json.dumps(v).encode())


@settings(max_examples=300, deadline=None)
@given(
    header=st.one_of(headers, st.binary(max_size=64), st.just(b"[" * 100_000)),
    data=st.binary(max_size=64),
    declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
)
def test_safetensors_headers_raise_only_load_errors(header: bytes, data: bytes, declared: int | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        _safetensors(path, header, data)
        if declared is not None:  # a lying length prefix
            path.write_bytes(struct.pack("<Q", declared) + path.read_bytes()[8:])
        try:
            parsed = check_safetensors_header(path)
        except SnapshotLoadError as error:
            assert str(path) in str(error)
            return
        # accepted: the tensors tile the data section exactly
        spans = sorted(tuple(v["data_offsets"]) for k, v in parsed.items() if k != "__metadata__")
        assert sum(end - begin for begin, end in spans) == path.stat().st_size - 8 - len(header)


@pytest.mark.parametrize(
    "index",
    [b"not json", b"[1, 2]", b'{"weight_map": [1]}', b'{"weight_map": {"a": ["x"]}}', b"[" * 100_000, b'"text"'],
)
def test_a_hostile_shard_index_is_a_load_error(tmp_path: Path, index: bytes) -> None:
    from hf_sgdr.snapshot_format.storage import record_files

    folder = tmp_path / "cycle-000"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors.index.json").write_bytes(index)
    record = SnapshotRecord(name="cycle-000", cycle=0, global_step=1, scheduler_step=1, files=record_files(folder))
    with pytest.raises(SnapshotLoadError, match=r"cycle-000/model.safetensors.index.json"):
        check_snapshot(tmp_path, record, "full_model")
