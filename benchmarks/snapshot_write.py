"""Does a snapshot's background write hold up the training thread? It should not: it runs on the writer thread.

The writer's job for one snapshot (`save_pretrained` of the copied weights into a temporary folder, the SHA-256 of
every file, the rename: `write_snapshot_folder` + `save_weights`, as `SnapshotWriter` runs it) runs on a thread,
while the main thread runs a loop of small in-place torch ops, as a training loop on a GPU does (each op is a
kernel launch that needs the GIL). Reported: the loop's rate during the write against its rate alone, and its
longest pause. A writer that holds the GIL stops the loop for as long as it holds it; on a GPU that is the
training thread launching nothing. The result is recorded per installed safetensors version (up to 0.7,
`save_file` copies every tensor into a Python `bytes` under the GIL; 0.8 writes from the tensors' memory).

    python benchmarks/snapshot_write.py                               # GPT-2 124M, 3 writes (about a minute)
    PYTHONPATH=DIR python benchmarks/snapshot_write.py                # the same with the safetensors in DIR
    python benchmarks/snapshot_write.py --quick                       # CI smoke run (a small GPT-2)

Each run replaces its safetensors version's row in `snapshot_write.json` and rewrites `snapshot_write.md`.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from _common import machine_info, markdown_table, write_results
from hf_sgdr.atomic import fsync_tree
from hf_sgdr.snapshot_format.storage import record_files, write_snapshot_folder
from hf_sgdr.training.weights import capture_weights, save_weights
from hf_sgdr.training.writer import lower_thread_priority

RESULTS = Path(__file__).resolve().parent / "results"


def _loop(stop: threading.Event | None, seconds: float) -> tuple[int, float, float]:
    """Tiny in-place ops until `stop` is set (or for `seconds`): (ops, elapsed s, longest pause between two ops)."""
    x = torch.ones(8)
    count, start = 0, time.perf_counter()
    last, worst = start, 0.0
    while (stop.is_set() is False) if stop is not None else (last - start < seconds):
        x.add_(1e-9)
        count += 1
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    return count, last - start, worst


def measure_write(model: torch.nn.Module, weights: dict[str, torch.Tensor], work: Path, index: int) -> dict[str, Any]:
    """One snapshot write on a thread beside the op loop, and the loop alone just before it."""
    alone_ops, alone_s, alone_pause = _loop(None, 1.0)
    done, result = threading.Event(), {}

    def write() -> None:
        lower_thread_priority()  # as the writer's thread runs
        start = time.perf_counter()
        write_snapshot_folder(work / f"cycle-{index:03d}", lambda tmp: save_weights(model, tmp, weights))
        result["write_s"] = time.perf_counter() - start
        done.set()

    writer = threading.Thread(target=write, name="hf_sgdr-snapshot-writer")
    writer.start()
    ops, seconds, pause = _loop(done, 0.0)
    writer.join()
    rate, alone_rate = ops / seconds, alone_ops / alone_s
    return {
        "write_s": result["write_s"],
        "loop_rate_ratio": rate / alone_rate,
        "loop_lost_s": seconds - ops / alone_rate,
        "longest_pause_ms": 1000 * pause,
        "longest_pause_alone_ms": 1000 * alone_pause,
    }


def _blocked_ms(job: Callable[[], object]) -> float:
    """Ms a pure-Python probe on the main thread could not run while `job` ran on a thread: gaps over 0.2 ms
    between two clock reads, with a 0.5 ms switch interval (the GIL taken away from the probe at most that long
    after the job asks for it). The job runs at the writer thread's lower priority, so the probe keeps its core: the
    gaps are the job's time holding the GIL, and the OS's time slices where more threads run than there are cores."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (lower_thread_priority(), job(), done.set()))
    blocked, last = 0.0, time.perf_counter()
    worker.start()
    try:
        while not done.is_set():
            now = time.perf_counter()
            if now - last > 0.0002:
                blocked += now - last
            last = now
    finally:
        worker.join()
        sys.setswitchinterval(interval)
    return 1000 * blocked


def measure_phases(model: torch.nn.Module, weights: dict[str, torch.Tensor], work: Path) -> dict[str, float]:
    """The probe's blocked ms for each phase of the writer's job, median of 3 (each phase on the folder the
    previous one wrote)."""
    phases: dict[str, list[float]] = {"save_pretrained": [], "checksums": [], "flush": []}
    for index in range(3):
        folder = work / f"phases-{index}"
        folder.mkdir()
        phases["save_pretrained"].append(_blocked_ms(functools.partial(save_weights, model, folder, weights)))
        phases["checksums"].append(_blocked_ms(functools.partial(record_files, folder, spare_cores=1)))
        phases["flush"].append(_blocked_ms(functools.partial(fsync_tree, folder)))
        shutil.rmtree(folder)
    return {name: statistics.median(values) for name, values in phases.items()}


def run(quick: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    small = {"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 1000, "bos_token_id": 0, "eos_token_id": 0}
    config = GPT2Config(**small) if quick else GPT2Config()
    model = GPT2LMHeadModel(config)
    weights = capture_weights(model)
    size = sum(
        t.numel() * t.element_size() for t in {t.untyped_storage().data_ptr(): t for t in weights.values()}.values()
    )
    with tempfile.TemporaryDirectory(prefix="hf_sgdr-snapshot-write-") as tmp:
        # Un-timed first: the first save imports what save_pretrained imports lazily (under the GIL, once per run).
        write_snapshot_folder(Path(tmp) / "warm-up", lambda folder: save_weights(model, folder, weights))
        writes = [measure_write(model, weights, Path(tmp), index) for index in range(1 if quick else 3)]
        blocked = measure_phases(model, weights, Path(tmp))
    return {
        "safetensors": safetensors.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model": "GPT-2 (2 layers, 64 wide)" if quick else "GPT-2 124M",
        "weights_mb": size / 1e6,
        "writes": writes,
        "blocked_ms": blocked,
        "worst": {
            "loop_rate_ratio": min(w["loop_rate_ratio"] for w in writes),
            "loop_lost_s": max(w["loop_lost_s"] for w in writes),
            "longest_pause_ms": max(w["longest_pause_ms"] for w in writes),
        },
    }


def render(rows: dict[str, dict[str, Any]], machine: dict[str, Any]) -> str:
    header = ["safetensors", "transformers, torch", "model", "write (s)", "main loop's rate during the write",
              "main loop's time lost (s)", "longest pause (ms)"]  # fmt: skip
    lines = []
    for version, row in sorted(rows.items()):
        worst = row["worst"]
        lines.append([
            version, f"{row.get('transformers', '?')}, {row.get('torch', '?')}", row["model"],
            f"{max(w['write_s'] for w in row['writes']):.2f}", f"{worst['loop_rate_ratio']:.2f}x of alone",
            f"{worst['loop_lost_s']:.2f}", f"{worst['longest_pause_ms']:.1f}",
        ])  # fmt: skip
    table = markdown_table(header, lines)
    phases = ["save_pretrained", "checksums", "flush"]
    blocked = markdown_table(
        ["safetensors", *(f"{phase} (ms)" for phase in phases)],
        [[version, *(f"{row['blocked_ms'][p]:.1f}" for p in phases)] for version, row in sorted(rows.items())
         if "blocked_ms" in row],
    )  # fmt: skip
    return (
        "# Does a snapshot's background write hold up the training thread?\n\n"
        "`python benchmarks/snapshot_write.py` (see its docstring): one snapshot write (`save_pretrained`, "
        "checksums, rename) on the writer thread while the main thread runs tiny torch ops; the worst of 3 "
        "writes after an un-timed one. A rate near 1.00x means the write left the training thread alone.\n\n"
        f"{table}\n\n"
        "What each phase of the writer's job holds the main thread for: the ms a pure-Python probe on the main "
        "thread could not run (gaps over 0.2 ms, switch interval 0.5 ms), median of 3; the phase runs at the writer "
        "thread's lower priority, as in training. That is the phase's time holding the GIL, plus the OS's time "
        "slices where more threads run than there are cores.\n\n"
        f"{blocked}\n\n"
        f"Machine: {machine['cpus']} CPU cores, {machine['platform']}, Python {machine['python']}, hf_sgdr "
        f"{machine['hf_sgdr']}. transformers 5.13 and later require safetensors 0.8, so the rows compare versions in "
        "the environment of the lowest supported ones (`constraints/floors.txt`).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small GPT-2, one write (CI smoke run)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS, help="where the JSON and Markdown go")
    args = parser.parse_args()
    name = "snapshot_write_quick" if args.quick else "snapshot_write"
    existing = args.results_dir / f"{name}.json"
    rows = json.loads(existing.read_text(encoding="utf-8"))["rows"] if existing.is_file() else {}
    row = run(args.quick)
    rows[row["safetensors"]] = row
    machine = machine_info()
    paths = write_results(name, {"machine": machine, "rows": rows}, render(rows, machine), args.results_dir)
    worst = row["worst"]
    print(
        f"safetensors {row['safetensors']}: main loop at {worst['loop_rate_ratio']:.2f}x of its rate alone during the "
        f"write, longest pause {worst['longest_pause_ms']:.1f} ms -> {paths[1]}"
    )


if __name__ == "__main__":
    main()
