"""Files larger than one piece are recorded, and verified, as the SHA-256 of each piece, hashed in parallel."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import threading
from pathlib import Path

import pytest
from helpers.ensembles import tiny_bert_folder

import hf_sgdr.snapshot_format.digests as digests
from hf_sgdr.snapshot_format.digests import digest_files, mismatched_files
from hf_sgdr.snapshot_format.manifest import MIN_PIECE_SIZE, FileRecord, ManifestError, SnapshotManifest
from hf_sgdr.snapshot_format.storage import record_files, write_snapshot_folder
from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotLoadError

PIECE = MIN_PIECE_SIZE


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pieces of the smallest accepted size, so that test files of a few hundred KiB have several."""
    monkeypatch.setattr(digests, "PIECE_SIZE", PIECE)
    return PIECE


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_large_file_is_recorded_per_piece_and_a_small_one_whole(tmp_path: Path, small_pieces: int) -> None:
    data = os.urandom(3 * PIECE + 123)
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "small.json").write_bytes(b"{}")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "exact").write_bytes(data[:PIECE])
    records = digest_files({name: tmp_path / name for name in ("big.bin", "small.json", "empty", "exact")})
    pieces = [_sha(data[offset : offset + PIECE]) for offset in range(0, len(data), PIECE)]
    assert records["big.bin"] == FileRecord(None, len(data), PIECE, pieces)
    assert records["small.json"] == FileRecord(_sha(b"{}"), 2)
    assert records["empty"] == FileRecord(_sha(b""), 0)
    assert records["exact"] == FileRecord(_sha(data[:PIECE]), PIECE)  # one piece: the whole-file digest


def test_one_changed_byte_in_any_piece_is_found(tmp_path: Path, small_pieces: int) -> None:
    path = tmp_path / "big.bin"
    data = bytearray(os.urandom(4 * PIECE))
    path.write_bytes(bytes(data))
    record = digest_files({"big.bin": path})["big.bin"]
    whole = FileRecord(_sha(bytes(data)), len(data))  # as a format 1 manifest records it
    assert mismatched_files({"big.bin": (path, record), "old": (path, whole)}) == []
    data[2 * PIECE + 17] ^= 0x01
    path.write_bytes(bytes(data))
    assert mismatched_files({"big.bin": (path, record), "old": (path, whole)}) == ["big.bin", "old"]
    path.write_bytes(bytes(data[: 3 * PIECE]))  # shorter than recorded (the size check comes first at load)
    assert mismatched_files({"big.bin": (path, record)}) == ["big.bin"]


def test_pieces_are_hashed_on_several_threads(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(8 * PIECE))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    seen: set[str] = set()
    real = digests.sha256_range
    barrier, lock = threading.Barrier(2, timeout=10), threading.Lock()

    def hash_piece(*piece: object) -> str | None:
        name = threading.current_thread().name
        with lock:
            first_two = name not in seen and len(seen) < 2
            seen.add(name)
        if first_two:
            barrier.wait()  # two pieces in flight at once: hashed side by side, not one after the other
        return real(*piece)

    monkeypatch.setattr(digests, "sha256_range", hash_piece)
    assert digest_files({"big.bin": path})["big.bin"].piece_sha256 is not None
    assert len(seen) >= 2 and all(name.startswith("hf_sgdr-sha256") for name in seen)


def test_each_hashing_thread_reads_through_one_buffer_that_is_unmapped_afterwards(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A buffer per piece would fault in fresh pages every piece; one from the malloc arena would stay resident
    # after the load (glibc keeps a thread's arena).
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(8 * PIECE))
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    mappings: list[mmap.mmap] = []
    real_mmap = mmap.mmap

    def recording_mmap(*args: object, **kwargs: object) -> mmap.mmap:
        mappings.append(real_mmap(*args, **kwargs))
        return mappings[-1]

    monkeypatch.setattr(mmap, "mmap", recording_mmap)
    record = digest_files({"big.bin": path})["big.bin"]
    assert len(record.piece_sha256 or []) == 8
    assert len(mappings) == 3 and all(mapping.closed for mapping in mappings)
    assert mismatched_files({"big.bin": (path, record)}) == []
    assert len(mappings) == 6 and all(mapping.closed for mapping in mappings)


def _pieced_copy(folder: Path, monkeypatch: pytest.MonkeyPatch) -> SnapshotManifest:
    """Copy tiny_bert's ensemble to `folder`, then record its files again in pieces of the smallest size."""
    shutil.copytree(tiny_bert_folder(), folder)
    manifest = SnapshotManifest.load(folder)
    assert manifest.to_dict()["format_version"] == 1  # tiny_bert's files are all below the 32 MiB default
    monkeypatch.setattr(digests, "PIECE_SIZE", PIECE)
    for record in manifest.snapshots:
        record.files = record_files(folder / record.name)
    manifest.save(folder)
    return manifest


def test_the_manifest_stays_format_1_until_a_file_needs_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ensemble"
    manifest = _pieced_copy(folder, monkeypatch)
    written = json.loads((folder / "manifest.json").read_text())
    assert written["format_version"] == 2
    weights = written["snapshots"][0]["files"]["model.safetensors"]
    assert set(weights) == {"size", "piece_size", "piece_sha256"} and weights["piece_size"] == PIECE
    assert set(written["snapshots"][0]["files"]["config.json"]) == {"sha256", "size"}
    assert SnapshotManifest.load(folder) == manifest


def test_a_pieced_snapshot_loads_and_a_corrupt_piece_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ensemble"
    _pieced_copy(folder, monkeypatch)
    reference = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    ensemble = SnapshotEnsemble.from_pretrained(folder, progress=False)
    assert ensemble.num_snapshots == reference.num_snapshots
    weights = folder / "cycle-002" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) - PIECE // 2] ^= 0xFF  # in the last piece; same size, same header
    weights.write_bytes(bytes(data))
    with pytest.raises(SnapshotLoadError, match=r"cycle-002/model\.safetensors is corrupt"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)
    assert SnapshotEnsemble.from_pretrained(folder, snapshots=["cycle-000", "cycle-003"], progress=False)


def _pieced_record(**changes: object) -> dict:
    record = {"size": 3 * PIECE, "piece_size": PIECE, "piece_sha256": [_sha(b"x")] * 3}
    record.update(changes)
    return {key: value for key, value in record.items() if value is not None}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_pieced_record(sha256=_sha(b"x")), r"has both sha256 and piece_sha256"),
        (_pieced_record(piece_size=0), r"piece_size is 0; accepted: 65536 to 1073741824 bytes"),
        (_pieced_record(piece_size=1 << 31), r"piece_size is 2147483648; accepted"),
        (_pieced_record(piece_size=True), r"piece_size has the wrong type \(bool\)"),
        (_pieced_record(piece_size="64k"), r"piece_size has the wrong type str"),
        (
            _pieced_record(piece_sha256=[_sha(b"x")] * 2),
            r"has 2 digests; a 196608-byte file in 65536-byte pieces has 3",
        ),
        (_pieced_record(piece_sha256=[_sha(b"x"), "zz", _sha(b"x")]), r"piece_sha256\[1\] is not a hex SHA-256"),
        (_pieced_record(piece_sha256="abc"), r"piece_sha256 has the wrong type str"),
        (_pieced_record(piece_size=None), r"piece_size is missing"),
        ({"size": 3}, r"sha256 is missing"),
    ],
)
def test_a_hostile_file_record_is_refused_naming_the_field(record: dict, message: str) -> None:
    data = {
        "format": "hf_sgdr.snapshot_ensemble",
        "format_version": 2,
        "snapshot_type": "full_model",
        "snapshots": [
            {
                "name": "cycle-000",
                "cycle": 0,
                "global_step": 1,
                "scheduler_step": 1,
                "files": {"model.safetensors": record},
            }
        ],
    }
    with pytest.raises(ManifestError, match=r"snapshots\[0\]\.files\['model\.safetensors'\]"):
        SnapshotManifest.from_dict(data)
    with pytest.raises(ManifestError, match=message):
        SnapshotManifest.from_dict(data)


@pytest.mark.parametrize(("cpus", "hashing_threads"), [(2, 0), (3, 2)])
def test_a_snapshot_write_leaves_one_core_to_the_training_thread(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch, cpus: int, hashing_threads: int
) -> None:
    """With 2 cores the writer hashes on its own thread only; with 3, on a pool of at most 2."""
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    seen: set[str] = set()
    real = digests.sha256_range
    monkeypatch.setattr(
        digests, "sha256_range", lambda *piece: seen.add(threading.current_thread().name) or real(*piece)
    )
    data = os.urandom(8 * PIECE)
    files = write_snapshot_folder(
        tmp_path / "cycle-000", lambda folder: (folder / "model.safetensors").write_bytes(data)
    )
    assert files["model.safetensors"].piece_sha256 == [_sha(data[i : i + PIECE]) for i in range(0, len(data), PIECE)]
    pool = {name for name in seen if name.startswith("hf_sgdr-sha256")}
    if hashing_threads:
        assert 1 <= len(pool) <= hashing_threads and seen == pool
    else:
        assert seen == {threading.current_thread().name}
