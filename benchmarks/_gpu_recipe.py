"""Part (d) of `gpu.py`: the README's main job (`recipes/glue.py`, 5-epoch preset) launched as a user would,
its wall time and its final table (read from the `ensemble_results.json` it writes).

`--quick` runs the same command on the CPU with a few steps of a small slice, so that the path cannot rot.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hf_sgdr.snapshots import EvaluationReport

REPO = Path(__file__).resolve().parents[1]
CONFIG = "recipes/configs/glue_cpu_5ep_T0-63_Tmult-1.json"
QUICK_FLAGS = (
    "--max_train_samples", "64", "--max_eval_samples", "32", "--selection_size", "16", "--max_train_steps", "6",
    "--sgdr_T_0", "2", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32", "--max_length", "32",
)  # fmt: skip


def command(quick: bool, output_dir: Path) -> list[str]:
    """`python3 -m accelerate.commands.launch ... recipes/glue.py --config <preset>` (bf16 on the GPU)."""
    launch = ["-m", "accelerate.commands.launch", "--num_processes", "1", "--mixed_precision"]
    launch += ["no", "--cpu", "--num_cpu_threads_per_process", "1"] if quick else ["bf16"]
    flags = ["--config", CONFIG, "--output_dir", str(output_dir), *(QUICK_FLAGS if quick else ())]
    return [sys.executable, *launch, "recipes/glue.py", *flags]


def run(quick: bool, work: Path, log: Path, timeout: float) -> dict[str, Any]:
    """Run the recipe (its output to `log`), killed with its process group after `timeout` seconds."""
    out = work / "glue"
    shutil.rmtree(out, ignore_errors=True)  # a restarted run starts the recipe afresh
    argv = command(quick, out)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as stream:
        process = subprocess.Popen(argv, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise TimeoutError(f"recipes/glue.py ran past its {timeout:.0f} s budget (output in {log.name})") from None
    seconds = time.perf_counter() - start
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"recipes/glue.py exited with {code}:\n{tail}")
    report = EvaluationReport.load_json(out / "ensemble_results.json")
    full = max(report.rows_of("ensemble"), key=lambda row: len(row.members))
    return {
        "command": shlex.join(["python3", *argv[1:]]),
        "seconds": seconds,
        "snapshots": report.num_members,
        "ensemble": {"name": full.name, **full.metrics},
        "table": report.to_table(),
        "resident_models_peak": report.resident_models_peak,
    }
