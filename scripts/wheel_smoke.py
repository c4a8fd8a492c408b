"""Smoke test of an installed hf_sgdr wheel, run from outside the source tree (CI runs it in a fresh venv).

An editable install hides whatever the wheel leaves out; this imports every module the installed package holds,
checks that the wheel holds every module of the source tree it was built from, trains a tiny model with
`SGDRTrainer` (snapshots on), evaluates the snapshot ensemble and runs `hf-sgdr describe`.

    python scripts/wheel_smoke.py --source_tree .    # cwd must not be the source tree
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path


def installed_modules() -> list[str]:
    """Every module of the installed hf_sgdr, imported (an import error names the module)."""
    import hf_sgdr

    names = ["hf_sgdr"] + [info.name for info in pkgutil.walk_packages(hf_sgdr.__path__, "hf_sgdr.")]
    for name in names:
        importlib.import_module(name)
    return names


def source_modules(tree: Path) -> list[str]:
    """Every module under `tree/hf_sgdr`, as dotted names."""
    names = []
    for path in sorted((tree / "hf_sgdr").rglob("*.py")):
        parts = path.relative_to(tree).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def train_and_evaluate(workdir: Path) -> dict[str, object]:
    """A tiny GPT-2 trained for 3 SGDR cycles with snapshots, then its ensemble evaluated."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_sgdr.snapshots import SnapshotEnsemble
    from hf_sgdr.training import SGDRTrainer, SGDRTrainingArguments

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (24, 16)).tolist()]
    args = SGDRTrainingArguments(
        output_dir=str(workdir / "run"),
        per_device_train_batch_size=4,
        num_train_epochs=2,
        learning_rate=1e-3,
        sgdr_num_cycles=3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = SGDRTrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    snapshots = workdir / "run" / "snapshots"
    ensemble = SnapshotEnsemble.from_pretrained(snapshots, progress=False)
    batches = [{"input_ids": torch.tensor(data[i]["input_ids"][:16]).view(1, -1)} for i in range(4)]
    for batch in batches:
        batch["labels"] = batch["input_ids"]
    report = ensemble.evaluate(batches, soups=True)
    return {"snapshots": ensemble.snapshot_names, "rows": len(report.rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source_tree", type=Path, required=True, help="the checkout the wheel was built from")
    args = parser.parse_args()
    import hf_sgdr

    location = Path(hf_sgdr.__file__).resolve()
    if args.source_tree.resolve() in location.parents:
        sys.exit(f"hf_sgdr was imported from the source tree ({location}), not from the installed wheel")
    imported = installed_modules()
    missing = sorted(set(source_modules(args.source_tree)) - set(imported))
    if missing:
        sys.exit(f"the wheel lacks modules of the source tree: {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        result = train_and_evaluate(Path(tmp))
    if result["snapshots"] != ["cycle-000", "cycle-001", "cycle-002"]:
        sys.exit(f"expected 3 snapshots, got {result['snapshots']}")
    described = subprocess.run(
        [
            str(Path(sys.executable).parent / "hf-sgdr"),
            "describe",
            "--num_training_steps",
            "100",
            "--num_cycles",
            "4",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    schedule = json.loads(described.stdout)
    print(
        f"wheel smoke passed: {len(imported)} modules from {location.parent}; snapshots {result['snapshots']}, "
        f"{result['rows']} report rows; describe: {sorted(schedule)[:4]}..."
    )


if __name__ == "__main__":
    main()
