"""Issue 20 on one GPU, side by side in one run of at most 5 minutes:

(a) the stock `Trainer` + `cosine` against `SGDRTrainer` with a snapshot at each of 5 cycle ends (every 40
    steps) and optimizer resets, GPT-2 124M from `GPT2Config()`, bf16, fused AdamW, batch 16 × 512 tokens,
    200 steps: wall-time ratio and per-snapshot stall of the training thread, split by a third arm (the same
    restarts and resets, no snapshots) into the restart, the snapshot hand-off and the background write;
(c) load + verify of the 5 snapshots (5 × 622 MB);
(b) the ensemble's `evaluate` against K forward passes of one resident model, over 32 and 256 sequences;
(d) the README's main job, `recipes/glue.py` with the 5-epoch preset, under `accelerate launch` in bf16;
and a stacked forward (`torch.func`) against K sequential ones.

Random tokens feed (a)-(c) (speed does not depend on the text). Each part writes `part-<name>.json` to
`--results_dir` as soon as it ends, failed or not; a restarted run skips the parts already done by the same
code on the same machine at the same sizes (a part recorded under another fingerprint runs again). Every part
has a time budget within the whole run's `--time_limit`. At the end `gpu.json` and `gpu.md` (machine,
versions, command, the targets marked met / not met) are written there. Large files (snapshots) go to
`--work_dir`, never to the results. `--quick`: tiny sizes on the CPU (the default test run uses it), results
`gpu_quick.{json,md}`.

On the GPU machine, from the checkout: bash .gpu-bundle/on_device.sh python3 benchmarks/gpu.py --results_dir DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import accelerate
import safetensors
import torch
import transformers

import _gpu_ensemble
import _gpu_recipe
import _gpu_training
import hf_sgdr
from _common import write_results
from _gpu_report import render
from _gpu_setup import Sizes, device, release_memory

#: Seconds each part may take in a full run (the whole run stops short of 5 minutes).
BUDGETS = {"training": 140.0, "load_verify": 10.0, "ensemble": 30.0, "recipe": 80.0, "stacked": 10.0}
#: A part is not started with less than this many seconds left.
MIN_START_S = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--work_dir", type=Path, default=Path(tempfile.gettempdir()) / "hf_sgdr-gpu-benchmark")
    parser.add_argument("--quick", action="store_true", help="tiny sizes on the CPU: checks the code, not the speed")
    parser.add_argument(
        "--time_limit", type=float, default=None, help="seconds for the whole run (default 270; 900 with --quick)"
    )
    args = parser.parse_args(argv)
    args.results_dir, args.work_dir = args.results_dir.resolve(), args.work_dir.resolve()  # the recipe runs elsewhere
    return args


def machine() -> dict[str, Any]:
    """The device, the versions, and where hf_sgdr was imported from (a wheel's site-packages on the GPU)."""
    return {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU)",
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
        "hf_sgdr": hf_sgdr.__version__,
        "hf_sgdr_path": str(Path(hf_sgdr.__file__).parent),
    }


def fingerprint(sizes: Sizes) -> str:
    """What a part's numbers depend on: the hf_sgdr code imported, this benchmark's code, the recipe it runs (with
    its presets), the sizes and the machine. A restarted run keeps a part only under the same fingerprint, so that
    results left from an earlier version (the committed ones among them) are measured again, never passed off as
    new."""
    recipes = Path(__file__).resolve().parents[1] / "recipes"
    sources = [(Path(hf_sgdr.__file__).parent, "*.py"), (Path(__file__).parent, "*.py")]
    sources += [(recipes, "*.py"), (recipes, "*.json")]
    digest = hashlib.sha256()
    for root, pattern in sources:
        for path in sorted(root.rglob(pattern)):
            name = f"{root.name}/{path.relative_to(root).as_posix()}"
            digest.update(name.encode() + b"\0" + path.read_bytes())
    setting = {"sizes": asdict(sizes), "machine": {k: v for k, v in machine().items() if k != "hf_sgdr_path"}}
    digest.update(json.dumps(setting, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _holds_the_gil_while_writing(version: str) -> bool:
    """True for safetensors before 0.8, whose `save_file` copies every tensor to `bytes` under the GIL."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) < (0, 8)


def command(argv: list[str]) -> str:
    """The command as run (through the GPU bundle's `on_device.sh`, which installs the wheel, when it was)."""
    bundled = os.environ.get("SHARED_DIR", "").rstrip("/").endswith(".gpu-bundle/shared")
    return ("bash .gpu-bundle/on_device.sh " if bundled else "") + shlex.join(["python3", "benchmarks/gpu.py", *argv])


def parts(args: argparse.Namespace, sizes: Sizes) -> dict[str, Callable[[float], dict[str, Any]]]:
    """Each part as a function of its deadline (time.monotonic()), in the order they run."""
    work = args.work_dir / ("quick" if args.quick else "full")
    log = args.results_dir / f"recipe{'_quick' if args.quick else ''}.log"

    def snapshots() -> Path:
        return _gpu_ensemble.snapshot_folder(work, sizes)

    return {
        "training": lambda deadline: _gpu_training.run(sizes, work, deadline),
        "load_verify": lambda deadline: _gpu_ensemble.load_verify(snapshots()),
        "ensemble": lambda deadline: _gpu_ensemble.evaluate_vs_forwards(snapshots(), sizes, deadline),
        "recipe": lambda deadline: _gpu_recipe.run(args.quick, work, log, deadline - time.monotonic()),
        "stacked": lambda deadline: _gpu_ensemble.stacked(snapshots(), sizes),
    }


def run_part(
    name: str, function: Callable[[float], dict[str, Any]], path: Path, deadline: float, stamp: str
) -> dict[str, Any]:
    """Run one part (unless `path` holds its success under the same fingerprint `stamp`), record success or failure
    in `path`, return the record."""
    if path.is_file():
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["status"] == "ok" and record.get("fingerprint") == stamp:
            print(f"[{name}] done in an earlier run: kept", flush=True)
            return record
        if record["status"] == "ok":
            print(f"[{name}] recorded by other code, sizes or machine: measured again", flush=True)
    if deadline - time.monotonic() < MIN_START_S:
        record = {"status": "skipped", "error": "no time left in the run's --time_limit"}
    else:
        start = time.monotonic()
        try:
            record = {"status": "ok", "result": function(deadline)}
        except Exception as error:  # one part's failure must not stop the others
            traceback.print_exc()
            record = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        record["seconds"] = time.monotonic() - start
        release_memory()
    record["fingerprint"] = stamp
    path.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    sizes = Sizes.quick() if args.quick else Sizes.full()
    if not args.quick and device().type != "cuda":
        sys.exit("gpu.py needs a CUDA device (or --quick for the CPU check)")
    if _holds_the_gil_while_writing(safetensors.__version__):
        print(
            f"WARNING: safetensors {safetensors.__version__} holds the GIL for a whole file write (before 0.8), so "
            "every snapshot write stalls training; hf_sgdr requires safetensors>=0.8. A GPU bundle installs with "
            "--no-deps: add the wheel to it (docs/benchmarks.md, section 5).",
            flush=True,
        )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (args.work_dir / ("quick" if args.quick else "full")).mkdir(parents=True, exist_ok=True)
    limit = args.time_limit or (900.0 if args.quick else 270.0)
    end = started + limit
    records: dict[str, dict[str, Any]] = {}
    stamp = fingerprint(sizes)
    elapsed_budget = 0.0
    for name, function in parts(args, sizes).items():
        elapsed_budget += BUDGETS[name]
        # A part may use what earlier parts left unused, never the time of the parts after it.
        deadline = min(end, started + elapsed_budget * limit / sum(BUDGETS.values()))
        print(f"[{name}] starting at {time.monotonic() - started:.0f} s (until {deadline - started:.0f} s)", flush=True)
        path = args.results_dir / f"part-{name}{suffix}.json"
        records[name] = run_part(name, function, path, deadline, stamp)
        print(f"[{name}] {records[name]['status']} at {time.monotonic() - started:.0f} s", flush=True)
    header = {
        "machine": machine(),
        "command": command(argv if argv is not None else sys.argv[1:]),
        "mode": "quick, CPU" if args.quick else "full",
        "seconds": time.monotonic() - started,
    }
    markdown = render(header, records)
    write_results(f"gpu{suffix}", {**header, "parts": records}, markdown, args.results_dir)
    print(markdown, flush=True)


if __name__ == "__main__":
    main()
