"""How long recording and verifying snapshot checksums takes: whole-file SHA-256 (manifest format 1) against
SHA-256 per piece hashed in parallel (format 2, files larger than `digests.PIECE_SIZE`).

The files are in the page cache (written just before, read once), as a snapshot is right after its write and
usually at a load after training. Per case, the median of 3 timings of each way:

- format 1: one whole-file digest per file, the files on parallel threads (as loads verified them before);
- format 2: recording (`digests.digest_files` on every core but one, as the snapshot writer does) and verifying
  (`digests.mismatched_files`, every core, as a load does) the piece records.

    python benchmarks/digests.py            # one and five files of 498 MB (GPT-2 124M's weights), about a minute
    python benchmarks/digests.py --quick    # CI smoke run (one 80 MB file)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import machine_info, markdown_table, write_results
from hf_sgdr.snapshot_format import digests
from hf_sgdr.snapshot_format.digests import digest_files, hash_workers, mismatched_files
from hf_sgdr.snapshot_format.manifest import FileRecord

RESULTS = Path(__file__).resolve().parent / "results"
_BLOCK = 16 << 20


def _write(path: Path, size: int) -> None:
    block = os.urandom(_BLOCK)
    with open(path, "wb") as handle:
        for offset in range(0, size, _BLOCK):
            handle.write(block[: min(_BLOCK, size - offset)])


def _median_seconds(job: Callable[[], Any], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(folder: Path, count: int, size: int) -> dict[str, Any]:
    """Format 1 against format 2 for `count` files of `size` bytes."""
    paths = {f"cycle-{index:03d}/model.safetensors": folder / f"file-{index}.bin" for index in range(count)}
    for path in paths.values():
        if not path.exists() or path.stat().st_size != size:
            _write(path, size)
    pieced = digest_files(paths)  # also reads the files once into the page cache
    whole = {name: FileRecord(digests.sha256_range(path, 0, size), size) for name, path in paths.items()}
    one_file = next(iter(paths.values()))
    pieces = sum(len(record.piece_sha256 or [None]) for record in pieced.values())
    return {
        "files": count,
        "mb_each": size / 1e6,
        "pieces": pieces,
        "threads": hash_workers(pieces),
        "record_threads": hash_workers(pieces, spare_cores=1),
        "one_thread_gb_s": size / 1e9 / _median_seconds(lambda: digests.sha256_range(one_file, 0, size)),
        "format1_verify_s": _median_seconds(lambda: mismatched_files({n: (paths[n], r) for n, r in whole.items()})),
        "format2_record_s": _median_seconds(lambda: digest_files(paths, spare_cores=1)),
        "format2_verify_s": _median_seconds(lambda: mismatched_files({n: (paths[n], r) for n, r in pieced.items()})),
    }


def render(rows: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    header = ["files", "MB each", "format 1: whole-file digests (s)", "format 2: record pieces (s)",
              "format 2: verify pieces (s)", "speed-up (verify)", "pieces", "threads (record, verify)",
              "one thread (GB/s)"]  # fmt: skip
    lines = [
        [row["files"], f"{row['mb_each']:.0f}", f"{row['format1_verify_s']:.3f}", f"{row['format2_record_s']:.3f}",
         f"{row['format2_verify_s']:.3f}", f"{row['format1_verify_s'] / row['format2_verify_s']:.2f}x",
         row["pieces"], f"{row['record_threads']}, {row['threads']}", f"{row['one_thread_gb_s']:.2f}"]
        for row in rows
    ]  # fmt: skip
    return (
        "# Recording and verifying snapshot checksums\n\n"
        "`python benchmarks/digests.py` (see its docstring): files in the page cache; median of 3 timings each. "
        "Format 1 hashes each file whole (one thread per file); format 2 hashes "
        f"{digests.PIECE_SIZE >> 20} MiB pieces of every file on up to one thread per CPU core (recording at a "
        "snapshot write leaves one core to the training thread).\n\n"
        f"{markdown_table(header, lines)}\n\n"
        f"Machine: {machine['cpus']} CPU cores ({machine['processor']}), {machine['platform']}, Python "
        f"{machine['python']}, hf_sgdr {machine['hf_sgdr']}.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 80 MB file (CI smoke run)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS, help="where the JSON and Markdown go")
    args = parser.parse_args()
    cases = [(1, 80_000_000)] if args.quick else [(1, 498_000_000), (5, 498_000_000)]
    with tempfile.TemporaryDirectory(prefix="hf_sgdr-digests-") as tmp:
        rows = [measure(Path(tmp), count, size) for count, size in cases]
    machine = machine_info()
    name = "digests_quick" if args.quick else "digests"
    paths = write_results(name, {"machine": machine, "rows": rows}, render(rows, machine), args.results_dir)
    for row in rows:
        print(
            f"{row['files']} x {row['mb_each']:.0f} MB: format 1 {row['format1_verify_s']:.3f} s, format 2 "
            f"{row['format2_verify_s']:.3f} s on {row['threads']} threads -> {paths[1]}"
        )


if __name__ == "__main__":
    main()
