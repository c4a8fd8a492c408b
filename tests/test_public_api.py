"""The public face: `import hf_sgdr` is light, the lazy names resolve, "sgdr" is registered on demand."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import hf_sgdr
import hf_sgdr.snapshots
import hf_sgdr.training

#: Modules that `import hf_sgdr` must not load: the Trainer side and what it drags in (seconds).
HEAVY = ["peft", "torch", "transformers.trainer_utils", "hf_sgdr.training", "hf_sgdr.snapshots.ensemble"]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_import_hf_sgdr_loads_neither_peft_torch_nor_the_training_glue() -> None:
    code = f"import sys, json, hf_sgdr; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    loaded = json.loads(_run(code))
    assert loaded == []


def test_plain_import_then_transformers_gets_sgdr_everywhere() -> None:
    """The registration waits for transformers' modules and is in place before anything reads the enum."""
    code = (
        "import sys, hf_sgdr, torch\n"
        "from transformers import HfArgumentParser, TrainingArguments, get_scheduler\n"
        "assert 'sgdr' in HfArgumentParser(TrainingArguments).format_help()\n"
        "args = TrainingArguments(output_dir='out', lr_scheduler_type='sgdr')\n"
        "opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)\n"
        "s = get_scheduler('sgdr', opt, num_warmup_steps=0, num_training_steps=10)\n"
        "waiting = [f for f in sys.meta_path if type(f).__module__ == 'hf_sgdr._lazy']\n"
        "print(args.lr_scheduler_type.value, type(s).__name__, len(waiting))"
    )
    assert _run(code) == "sgdr SGDRScheduler 0"


@pytest.mark.parametrize("first", ["transformers.trainer_utils", "transformers.optimization"])
def test_registration_works_when_transformers_came_first(first: str) -> None:
    code = (
        f"import {first}, hf_sgdr\n"
        "from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION\n"
        "from transformers.trainer_utils import SchedulerType\n"
        "print(TYPE_TO_SCHEDULER_FUNCTION[SchedulerType('sgdr')] is hf_sgdr.get_sgdr_schedule)"
    )
    assert _run(code) == "True"


def test_public_names_resolve_lazily_and_are_listed() -> None:
    from hf_sgdr import SGDRAccelerateHelper, SGDRCallback, SGDRTrainer, SGDRTrainingArguments, SnapshotEnsemble
    from hf_sgdr.snapshots.ensemble import SnapshotEnsemble as FromModule
    from hf_sgdr.training import SGDRTrainer as FromTraining

    assert SnapshotEnsemble is FromModule and SGDRTrainer is FromTraining
    assert SGDRCallback.__module__ == "hf_sgdr.training.callback"
    assert SGDRAccelerateHelper.__module__ == "hf_sgdr.training.accelerate_loop"
    assert SGDRTrainingArguments.__module__ == "hf_sgdr.training.arguments"
    for package in (hf_sgdr, hf_sgdr.training, hf_sgdr.snapshots):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
        assert set(package.__all__) <= set(dir(package))
    assert hf_sgdr.CosineAnnealingWarmRestartsScheduler is hf_sgdr.SGDRScheduler  # a torch-like name
    assert issubclass(hf_sgdr.SGDRWithWarmup, hf_sgdr.SGDRScheduler)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = hf_sgdr.nope


def test_internals_stay_in_their_modules() -> None:
    for internal in ("STATE_NAME", "check_event_api", "ProcessSync", "CycleEndHandler", "library_versions"):
        assert internal not in hf_sgdr.training.__all__
        with pytest.raises(AttributeError):
            getattr(hf_sgdr.training, internal)
    from hf_sgdr.training.cycle_end import STATE_NAME, check_event_api  # noqa: F401 (still importable there)
    from hf_sgdr.training.distributed import ProcessSync  # noqa: F401


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("hf_sgdr.hub_access", "loading", "hf_sgdr.missing_resources"),
        ("hf_sgdr.training.core", "CycleEndHandler", "hf_sgdr.training.cycle_end"),
        ("hf_sgdr.training.core", "CycleLoss", "hf_sgdr.training.callback"),
        ("hf_sgdr.training.checkpoints", "find_checkpoint", "hf_sgdr.training.loop_checkpoints"),
    ],
)
def test_renamed_modules_still_give_their_names_and_say_where_they_went(old: str, name: str, new: str) -> None:
    with pytest.warns(FutureWarning, match=f"{old} is deprecated .*: import {name} from {new}"):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = importlib.import_module(old).nope


def test_recipes_import_only_public_names() -> None:
    """Every `from hf_sgdr... import name` in recipes/ names a package (or `hf_sgdr.data`) and one of its `__all__`."""
    public = {"hf_sgdr", "hf_sgdr.data", "hf_sgdr.snapshots", "hf_sgdr.training"}
    seen = set()
    for path in sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                assert not any(alias.name.startswith("hf_sgdr") for alias in node.names), path.name
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hf_sgdr"):
                assert node.module in public, f"{path.name} imports from {node.module}"
                exported = importlib.import_module(node.module).__all__
                for alias in node.names:
                    assert alias.name in exported, f"{path.name}: {node.module}.{alias.name} is not public"
                    seen.add(alias.name)
    assert {"SGDRAccelerateHelper", "find_checkpoint", "save_checkpoint", "TrainData"} <= seen
