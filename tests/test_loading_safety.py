"""Every refusal of the safe loader, on damaged copies of a real snapshot folder."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.ensembles import copy_folder, tiny_bert_folder

from hf_sgdr.snapshot_format.loading import check_safetensors_header
from hf_sgdr.snapshot_format.storage import record_files
from hf_sgdr.snapshots import ManifestError, SnapshotEnsemble, SnapshotLoadError, SnapshotManifest


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return copy_folder(tiny_bert_folder(), tmp_path / "snapshots")


def _edit_manifest(folder: Path, edit: Callable[[dict], object]) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))


def _rerecord(folder: Path, name: str) -> None:
    """What an attacker controlling the repo does: make the manifest's checksums match the altered files."""
    files = {k: {"sha256": v.sha256, "size": v.size} for k, v in record_files(folder / name).items()}
    _edit_manifest(folder, lambda data: next(s for s in data["snapshots"] if s["name"] == name).update(files=files))


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _malicious_bin(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_Payload(marker)))


def test_the_pickle_payload_is_live(tmp_path: Path) -> None:
    """Sanity check for the refusal test below: unpickling the payload does run code."""
    marker = tmp_path / "ran"
    _malicious_bin(tmp_path / "payload.bin", marker)
    subprocess.run(
        [sys.executable, "-c", f"import pickle; pickle.load(open({str(tmp_path / 'payload.bin')!r}, 'rb'))"], check=True
    )
    assert marker.exists()


def test_a_pickle_checkpoint_is_refused_and_never_unpickled(folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    (folder / "cycle-001" / "model.safetensors").unlink()
    _malicious_bin(folder / "cycle-001" / "pytorch_model.bin", marker)
    _rerecord(folder, "cycle-001")
    with pytest.raises(
        SnapshotLoadError,
        match=r"refusing cycle-001/pytorch_model.bin .*pickle-based checkpoint.*"
        r"execute arbitrary code.*safetensors only",
    ):
        SnapshotEnsemble.from_pretrained(folder)
    assert not marker.exists()


def test_an_unlisted_pickle_beside_the_safetensors_is_refused(folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    _malicious_bin(folder / "cycle-002" / "pytorch_model.bin", marker)
    with pytest.raises(SnapshotLoadError, match=r"refusing cycle-002/pytorch_model.bin: it is a pickle"):
        SnapshotEnsemble.from_pretrained(folder)
    assert not marker.exists()


def test_a_bit_flip_is_caught_by_the_checksum(folder: Path) -> None:
    path = folder / "cycle-002" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotLoadError, match=r"cycle-002/model.safetensors is corrupt: its SHA-256 differs"):
        SnapshotEnsemble.from_pretrained(folder)


def test_a_checksum_mismatch_in_the_manifest_is_caught(folder: Path) -> None:
    _edit_manifest(folder, lambda d: d["snapshots"][0]["files"]["config.json"].update(sha256="0" * 64))
    with pytest.raises(SnapshotLoadError, match=r"cycle-000/config.json is corrupt"):
        SnapshotEnsemble.from_pretrained(folder)


def test_a_truncated_file_is_caught_by_size_and_by_its_header(folder: Path) -> None:
    path = folder / "cycle-001" / "model.safetensors"
    full = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(full - 1000)
    with pytest.raises(
        SnapshotLoadError,
        match=rf"cycle-001/model.safetensors has {full - 1000} bytes, manifest.json "
        rf"says {full} \(truncated or altered\)",
    ):
        SnapshotEnsemble.from_pretrained(folder)
    _rerecord(folder, "cycle-001")  # checksums that match the truncated file: the header check still refuses it
    with pytest.raises(
        SnapshotLoadError,
        match=r"model.safetensors: tensor '.*' ends at byte \d+ of a \d+-byte data "
        r"section \(truncated file\?\)",
    ):
        SnapshotEnsemble.from_pretrained(folder)


def test_missing_folder_and_missing_file_are_named(folder: Path, tmp_path: Path) -> None:
    (folder / "cycle-003" / "config.json").unlink()
    with pytest.raises(SnapshotLoadError, match=r"cycle-003/config.json listed in manifest.json is missing"):
        SnapshotEnsemble.from_pretrained(folder)
    for path in (folder / "cycle-001").iterdir():
        path.unlink()
    (folder / "cycle-001").rmdir()
    with pytest.raises(SnapshotLoadError, match=r"snapshot folder 'cycle-001' listed in manifest.json is missing"):
        SnapshotEnsemble.from_pretrained(folder)
    with pytest.raises(
        FileNotFoundError, match=r"nowhere/at all does not exist \(there is no folder .*/nowhere either\): give an"
    ):
        SnapshotEnsemble.from_pretrained(tmp_path / "nowhere" / "at all")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "../outside"),
        ("name", "/etc"),
        ("name", "cycle-000/../../x"),
        ("file", "../../escape.json"),
        ("file", "/abs/model.safetensors"),
    ],
)
def test_paths_that_escape_the_folder_are_refused(folder: Path, field: str, value: str) -> None:
    def edit(data: dict) -> None:
        record = data["snapshots"][0]
        if field == "name":
            record["name"] = value
        else:
            record["files"][value] = record["files"]["config.json"]

    _edit_manifest(folder, edit)
    with pytest.raises(
        ManifestError,
        match=rf"{'' if field == 'name' else 'files name'}.*{value!r} is not a safe "
        r"relative path inside the snapshot folder",
    ):
        SnapshotEnsemble.from_pretrained(folder)


def test_symlinks_out_of_the_folder_are_refused(folder: Path, tmp_path: Path) -> None:
    outside = copy_folder(folder / "cycle-000", tmp_path / "outside")
    weights = folder / "cycle-000" / "model.safetensors"
    weights.unlink()
    weights.symlink_to(outside / "model.safetensors")  # same bytes, so the checksum alone would pass
    with pytest.raises(SnapshotLoadError, match=r"cycle-000/model.safetensors resolves to .*outside.*escapes"):
        SnapshotEnsemble.from_pretrained(folder)
    weights.unlink()
    for path in (folder / "cycle-000").iterdir():
        path.unlink()
    (folder / "cycle-000").rmdir()
    (folder / "cycle-000").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SnapshotLoadError, match=r"snapshot folder 'cycle-000' resolves to .*outside.*escapes"):
        SnapshotEnsemble.from_pretrained(folder)


def test_unknown_snapshot_type_and_auto_class_are_refused(folder: Path) -> None:
    _edit_manifest(folder, lambda d: d.update(snapshot_type="onnx"))
    with pytest.raises(ManifestError, match=r"unknown snapshot_type 'onnx'; accepted: full_model, peft_adapter"):
        SnapshotEnsemble.from_pretrained(folder)
    _edit_manifest(folder, lambda d: d.update(snapshot_type="full_model", auto_class="os.system"))
    with pytest.raises(ValueError, match=r"auto_class must name a transformers AutoModel class.*got 'os.system'"):
        SnapshotEnsemble.from_pretrained(folder)


def test_unlisted_files_are_refused(folder: Path) -> None:
    (folder / "cycle-003" / "extra.py").write_text("print('hello')")
    with pytest.raises(SnapshotLoadError, match=r"cycle-003/extra.py is not listed in manifest.json"):
        SnapshotEnsemble.from_pretrained(folder)


def _safetensors(path: Path, header: dict, data: bytes) -> None:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


def test_an_enormous_declared_tensor_is_refused_before_allocating(folder: Path) -> None:
    weights = folder / "cycle-002" / "model.safetensors"
    header = {
        "bert.embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [2**31, 2**31], "data_offsets": [0, 16]}
    }
    _safetensors(weights, header, b"\0" * 16)
    _rerecord(folder, "cycle-002")  # the manifest agrees with the file: only the header check stands in the way
    tracemalloc.start()
    try:
        with pytest.raises(
            SnapshotLoadError,
            match=r"tensor 'bert.embeddings.word_embeddings.weight' declares shape "
            r"\[2147483648, 2147483648\] \(18446744073709551616 bytes of F32\) but occupies 16 bytes; "
            r"refusing before allocating it",
        ):
            SnapshotEnsemble.from_pretrained(folder)
        assert tracemalloc.get_traced_memory()[1] < 50 * 2**20
    finally:
        tracemalloc.stop()


def test_malformed_safetensors_headers(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(SnapshotLoadError, match=r"declares a 1099511627776-byte header but holds 10 bytes"):
        check_safetensors_header(path)
    path.write_bytes(b"\1\2")
    with pytest.raises(SnapshotLoadError, match="not a safetensors file: 2 bytes"):
        check_safetensors_header(path)
    _safetensors(path, {"a": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 1]}}, b"\0")
    with pytest.raises(SnapshotLoadError, match="tensor 'a' has unknown dtype 'Q99'"):
        check_safetensors_header(path)
    _safetensors(
        path,
        {
            "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
            "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]},
        },
        b"\0" * 3,
    )
    with pytest.raises(SnapshotLoadError, match="tensor data overlaps or leaves a hole at byte 2"):
        check_safetensors_header(path)
    _safetensors(path, {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 5)
    with pytest.raises(SnapshotLoadError, match="3 bytes after the last tensor"):
        check_safetensors_header(path)
    _safetensors(path, {"a": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]}}, b"\0" * 12)
    assert check_safetensors_header(path)["a"]["shape"] == [2, 3]


def test_the_intact_copy_loads(folder: Path) -> None:
    manifest = SnapshotManifest.load(folder)
    assert SnapshotEnsemble.from_pretrained(folder).snapshot_names == [r.name for r in manifest.snapshots]


# ---------------------------------------------------------------------- more hostile inputs (reliability issue)
@pytest.mark.parametrize("name", ["model.pt", "weights.pth", "last.ckpt", "model.PKL"])
def test_every_pickle_suffix_listed_in_the_manifest_is_refused_unread(folder: Path, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "code-ran"
    _malicious_bin(folder / "cycle-000" / name, marker)
    _rerecord(folder, "cycle-000")
    with pytest.raises(SnapshotLoadError, match=rf"refusing cycle-000/{name} \(listed in manifest.json\)"):
        SnapshotEnsemble.from_pretrained(folder)
    assert not marker.exists()


def test_a_pickle_beside_the_manifest_is_skipped_never_unpickled(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "code-ran"
    for name in ("training_args.bin", "optimizer.pt"):
        _malicious_bin(folder / name, marker)
    with caplog.at_level("WARNING", logger="hf_sgdr.snapshot_format.loading"):
        ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
        from hf_sgdr.snapshot_format.loading import root_files

        assert {p.name for p in root_files(folder)}.isdisjoint({"training_args.bin", "optimizer.pt"})
    assert ensemble.num_snapshots == 4
    assert "skipping optimizer.pt: pickle-based files are never loaded or uploaded" in caplog.text
    assert not marker.exists()


def test_a_bit_flip_in_the_header_with_matching_checksums_is_refused_not_crashed(folder: Path) -> None:
    path = folder / "cycle-001" / "model.safetensors"
    data = bytearray(path.read_bytes())
    header = data[8 : 8 + struct.unpack("<Q", data[:8])[0]]
    where = 8 + header.index(b'"data_offsets":[') + len(b'"data_offsets":[')
    data[where] = ord("x")  # a digit of the first offset becomes a letter: the header is no longer JSON
    path.write_bytes(bytes(data))
    _rerecord(folder, "cycle-001")
    with pytest.raises(SnapshotLoadError, match=r"cycle-001/model.safetensors has an unreadable safetensors header"):
        SnapshotEnsemble.from_pretrained(folder)
    data[7] = 0x10  # the length prefix's top byte flipped: a header of ~2**60 bytes declared
    path.write_bytes(bytes(data))
    _rerecord(folder, "cycle-001")
    with pytest.raises(SnapshotLoadError, match=r"declares a \d+-byte header but holds \d+ bytes"):
        SnapshotEnsemble.from_pretrained(folder)


def test_a_lying_manifest_size_is_caught_before_the_checksum(folder: Path) -> None:
    _edit_manifest(folder, lambda d: d["snapshots"][2]["files"]["model.safetensors"].update(size=10**15))
    message = r"cycle-002/model.safetensors has \d+ bytes, manifest.json says 1000000000000000 \(truncated or altered\)"
    with pytest.raises(SnapshotLoadError, match=message):
        SnapshotEnsemble.from_pretrained(folder)


@pytest.mark.parametrize(
    "value", ["..\\outside", "cycle-000\x00", "~/.ssh", ".hidden", "cycle-000/./config.json", "a" * 600, "c:/x"]
)
def test_more_names_that_could_escape_are_refused(folder: Path, value: str) -> None:
    _edit_manifest(folder, lambda data: data["snapshots"][0].update(name=value))
    message = r"snapshots\[0\].name .*(not a safe relative path|must be a non-empty relative path)"
    with pytest.raises(ManifestError, match=message):
        SnapshotEnsemble.from_pretrained(folder)


def test_a_symlinked_file_is_followed_only_inside_the_folder(folder: Path, tmp_path: Path) -> None:
    """A link to a file inside the root is allowed (a Hub cache is all links); one that leads out is refused."""
    config = folder / "cycle-003" / "config.json"
    config.unlink()
    config.symlink_to(folder / "cycle-002" / "config.json")  # inside the folder and byte-identical
    SnapshotEnsemble.from_pretrained(folder, progress=False)  # contained: allowed (a Hub cache is all links)
    config.unlink()
    (tmp_path / "secret.json").write_text((folder / "cycle-002" / "config.json").read_text())
    config.symlink_to(tmp_path / "secret.json")
    with pytest.raises(SnapshotLoadError, match=r"cycle-003/config.json resolves to .*secret.json.*escapes"):
        SnapshotEnsemble.from_pretrained(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"format": "someone-elses-format"}, r"not an hf_sgdr snapshot manifest \(format='someone-elses-format'\)"),
        ({"format_version": 3}, r"unsupported manifest format_version 3 \(this hf_sgdr reads 1..2\)"),
        ({"format_version": True}, r"unsupported manifest format_version True"),
        ({"snapshot_type": "pickle"}, r"unknown snapshot_type 'pickle'"),
        ({"snapshots": {"cycle-000": {}}}, r"manifest.snapshots has the wrong type dict"),
    ],
)
def test_an_unknown_ensemble_kind_or_format_is_refused(folder: Path, edit: dict, message: str) -> None:
    _edit_manifest(folder, lambda data: data.update(edit))
    with pytest.raises(ManifestError, match=rf"manifest.json: {message}"):
        SnapshotEnsemble.from_pretrained(folder)


def test_an_unknown_ensemble_kind_is_refused_by_the_constructor() -> None:
    with pytest.raises(ValueError, match=r"kind must be one of .*; got 'multilabel'"):
        SnapshotEnsemble(kind="multilabel")


def test_a_card_for_a_manifest_claiming_a_huge_budget_stays_small(tmp_path: Path) -> None:
    """A manifest may claim 10^12 steps of 1-step cycles: the card lists 200 cycles and skips the plot."""
    import dataclasses
    import time

    from hf_sgdr.snapshot_format.manifest import SnapshotManifest
    from hf_sgdr.snapshots.card import MAX_CARD_CYCLES, schedule_tables, write_schedule_plot

    manifest = SnapshotManifest.load(tiny_bert_folder())
    hostile = dataclasses.replace(
        manifest,
        schedule={**manifest.schedule, "T_0": 1, "T_mult": 1.0, "cycle_limit": None, "last_cycle_length": None},
        training={**manifest.training, "num_training_steps": 10**12},
    )
    started = time.perf_counter()
    _, cycles = schedule_tables(hostile)
    assert not write_schedule_plot(hostile, tmp_path / "lr.png") and not (tmp_path / "lr.png").exists()
    assert time.perf_counter() - started < 10  # bounded work, not one row per claimed cycle
    rows = cycles.splitlines()[2:]
    assert len(rows) == MAX_CARD_CYCLES + 1 and rows[-1].startswith(f"| ... | {10**12 - MAX_CARD_CYCLES} more")


@pytest.mark.parametrize(
    ("key", "held_out", "message"),
    [
        ("train_data", [0, 0], r"training\.train_data\.held_out must list each row number once"),
        ("train_blocks", [0] * 1000, r"training\.train_blocks\.held_out must list each block number once"),
        ("train_blocks", [-1], r"training\.train_blocks\.held_out must list block numbers in \[0, rows_used=4\)"),
        ("train_blocks", ["0"], r"training\.train_blocks\.held_out must list block numbers"),
    ],
)
def test_a_hostile_held_out_record_is_refused(key: str, held_out: list, message: str) -> None:
    """Someone else's manifest may repeat a held-out number a million times (each scored again) or name numbers
    outside the run's data: refused when read, for rows and blocks alike."""
    from hf_sgdr.snapshot_format.manifest import TrainData

    training = {key: {"split": "train", "rows_used": 4, "held_out": held_out}}
    with pytest.raises(ManifestError, match=message):
        TrainData.from_training(training, key)
