"""Layer 3: `lr_scheduler_type="sgdr"` everywhere transformers accepts a scheduler name."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    get_scheduler,
)
from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION
from transformers.trainer_utils import SchedulerType

import hf_sgdr
from hf_sgdr import SGDRSchedule, SGDRScheduler, get_sgdr_schedule

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)


def test_sgdr_is_a_scheduler_type_member_in_every_enum_table() -> None:
    member = SchedulerType("sgdr")
    assert member is SchedulerType.SGDR and member.value == "sgdr"
    assert SchedulerType.__members__["SGDR"] is member
    assert "sgdr" in [m.value for m in SchedulerType]
    assert TYPE_TO_SCHEDULER_FUNCTION[member] is get_sgdr_schedule


def test_registration_is_idempotent_and_touches_nothing_else() -> None:
    members, functions = list(SchedulerType), dict(TYPE_TO_SCHEDULER_FUNCTION)
    hf_sgdr.register_sgdr_scheduler()
    hf_sgdr.register_sgdr_scheduler()
    assert list(SchedulerType) == members
    assert dict(TYPE_TO_SCHEDULER_FUNCTION) == functions
    assert SchedulerType("linear").value == "linear" and SchedulerType("cosine_with_restarts") in functions


def test_training_arguments_accept_sgdr_and_stay_serialisable(tmp_path: Path) -> None:
    args = TrainingArguments(
        output_dir=str(tmp_path), lr_scheduler_type="sgdr", lr_scheduler_kwargs={"T_mult": 2, "num_cycles": 3}
    )
    assert args.lr_scheduler_type is SchedulerType.SGDR
    assert pickle.loads(pickle.dumps(args)).lr_scheduler_type is SchedulerType.SGDR
    assert copy.deepcopy(args).lr_scheduler_kwargs == {"T_mult": 2, "num_cycles": 3}
    as_json = json.loads(args.to_json_string())
    assert as_json["lr_scheduler_type"] == "sgdr" and as_json["lr_scheduler_kwargs"]["num_cycles"] == 3
    assert args.set_lr_scheduler(name="sgdr", warmup_steps=5).lr_scheduler_type is SchedulerType.SGDR


def test_hf_argument_parser_lists_and_parses_sgdr(tmp_path: Path) -> None:
    parser = HfArgumentParser(TrainingArguments)
    assert "sgdr" in parser.format_help()
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--lr_scheduler_type",
            "sgdr",
            "--lr_scheduler_kwargs",
            '{"T_mult": 2, "eta_min": "1e-6", "cycle_limit": "null", "reset_optimizer_state": "true"}',
        ]
    )
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        _optimizer(),
        num_warmup_steps=0,
        num_training_steps=150,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
    assert isinstance(scheduler, SGDRScheduler)
    assert scheduler.schedule.eta_min == 1e-6 and scheduler.reset_optimizer_state is True
    assert scheduler.schedule.cycle_ends(150)[-1] == 150


def test_get_scheduler_honours_warmup_and_fits_the_budget_by_default() -> None:
    scheduler = get_scheduler("sgdr", _optimizer(), num_warmup_steps=10, num_training_steps=110)
    assert scheduler.schedule.warmup_steps == 10 and scheduler.schedule.cycle_limit == hf_sgdr.DEFAULT_NUM_CYCLES
    assert scheduler.schedule.cycle_ends(110)[-1] == 110
    fixed = get_scheduler(
        "sgdr", _optimizer(), num_warmup_steps=0, num_training_steps=100, scheduler_specific_kwargs={"T_0": "25"}
    )
    assert fixed.schedule == SGDRSchedule(T_0=25)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"T_mul": 2}, "T_mul.*did you mean 'T_mult'"),
        ({"t0": 5}, "unknown key"),
        ({"T_0": "-1"}, r"T_0 must be an integer in \[1, 1e\+09\]; got '-1'"),
        ({"eta_min": "1e-3x"}, "eta_min"),
        ({"T_0": 10, "num_cycles": 2}, "either T_0"),
        ({"warmup_steps": 3}, "disagrees with the Trainer's warmup"),
    ],
)
def test_factory_rejects_bad_kwargs_clearly(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        get_scheduler(
            "sgdr", _optimizer(), num_warmup_steps=5, num_training_steps=100, scheduler_specific_kwargs=kwargs
        )


def test_training_args_bin_needs_the_import_to_load(tmp_path: Path) -> None:
    path = tmp_path / "training_args.bin"
    torch.save(TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="sgdr"), path)
    load = f"import torch; a = torch.load({str(path)!r}, weights_only=False); print(a.lr_scheduler_type.value)"
    without = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)
    # The member is pickled by value (`SchedulerType('sgdr')`) or, on some Python builds, by name (`SGDR`).
    assert without.returncode != 0 and "sgdr" in without.stderr.lower()
    with_import = subprocess.run([sys.executable, "-c", "import hf_sgdr; " + load], capture_output=True, text=True)
    assert with_import.returncode == 0, with_import.stderr
    assert with_import.stdout.strip() == "sgdr"


def test_stock_trainer_trains_with_sgdr_and_logs_the_schedule(tmp_path: Path) -> None:
    """A real Trainer run on SST-2 with MiniLM: every logged lr equals the schedule's value."""
    tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)
    data = load_dataset("nyu-mll/glue", "sst2", split="train[:96]")
    data = data.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=32), batched=True)
    data = data.remove_columns(["sentence", "idx"])
    transformers.set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        max_steps=18,
        learning_rate=1e-4,
        warmup_steps=2,
        lr_scheduler_type="sgdr",
        lr_scheduler_kwargs={"T_mult": 2, "num_cycles": 3, "eta_min": 1e-6},
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    scheduler = trainer.lr_scheduler
    assert isinstance(scheduler, SGDRScheduler) and scheduler.last_epoch == 18
    assert scheduler.schedule.warmup_steps == 2 and scheduler.schedule.cycle_ends(18) == [4, 8, 18]
    logged = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    assert sorted(logged) == list(range(1, 19))
    for step, lr in logged.items():  # the lr the Trainer logs at step k was used by optimizer step k
        assert lr == pytest.approx(scheduler.schedule.lr(step - 1, 1e-4), rel=1e-9, abs=1e-15)


def test_get_scheduler_without_num_warmup_steps_defaults_to_no_warmup() -> None:
    from transformers import get_scheduler as get  # looked up after `import hf_sgdr` (the module's name was before)

    assert get is transformers.optimization.get_scheduler
    scheduler = get("sgdr", _optimizer(), num_training_steps=100)
    assert scheduler.schedule == get("sgdr", _optimizer(), num_warmup_steps=0, num_training_steps=100).schedule
    assert scheduler.schedule.warmup_steps == 0 and scheduler.get_last_lr() == [1e-3]
    with pytest.raises(ValueError, match="LINEAR requires `num_warmup_steps`"):  # other names as before
        get("linear", _optimizer(), num_training_steps=100)


def test_get_scheduler_imported_before_hf_sgdr_still_builds_sgdr_but_asks_for_the_warmup() -> None:
    """docs/trainer.md: a `get_scheduler` bound before `import hf_sgdr` is transformers' own function (the import cannot
    rebind a caller's name); it builds "sgdr" from the registered factory, with transformers' usual checks."""
    code = (
        "from transformers import get_scheduler\n"
        "import hf_sgdr, torch\n"
        "opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)\n"
        "s = get_scheduler('sgdr', opt, num_warmup_steps=0, num_training_steps=100, "
        "scheduler_specific_kwargs={'T_mult': 2})\n"
        "print(type(s).__name__, s.schedule.T_mult, s.schedule.warmup_steps)\n"
        "try:\n"
        "    get_scheduler('sgdr', opt, num_training_steps=100)\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    built, refused = result.stdout.strip().splitlines()
    assert built == "SGDRScheduler 2.0 0"
    assert refused == "SchedulerType.SGDR requires `num_warmup_steps`, please provide that argument."


def _cli_args(tmp_path: Path, *extra: str) -> TrainingArguments:
    parser = HfArgumentParser(TrainingArguments)
    common = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--report_to", "none", "--max_steps", "8"]
    (args,) = parser.parse_args_into_dataclasses([*common, "--lr_scheduler_type", "sgdr", *extra])
    return args


def _tiny_lm() -> tuple[torch.nn.Module, list]:
    from helpers.training import byte_lm_data, tiny_gpt2

    return tiny_gpt2(), byte_lm_data(16)


NOT_JSON = r"""lr_scheduler_kwargs for lr_scheduler_type='sgdr' must be a dict; on a command line a JSON object"""


def test_non_json_lr_scheduler_kwargs_say_what_the_option_expects(tmp_path: Path) -> None:
    args = _cli_args(tmp_path, "--lr_scheduler_kwargs", "T_0=5")
    assert args.lr_scheduler_kwargs == "T_0=5"  # transformers parses JSON only when it starts with "{"
    model, data = _tiny_lm()
    with pytest.raises(ValueError, match=NOT_JSON + r".*got 'T_0=5'; for 'T_0=5' write '\{\"T_0\": 5\}'"):
        Trainer(model=model, args=args, train_dataset=data).train()  # the stock Trainer
    from hf_sgdr.training import SGDRCallback, SGDRTrainer

    with pytest.raises(ValueError, match=NOT_JSON):  # at construction, not at train()
        SGDRTrainer(model=model, args=args, train_dataset=data)
    with pytest.raises(ValueError, match=NOT_JSON):
        Trainer(model=model, args=args, train_dataset=data, callbacks=[SGDRCallback(save_snapshots=False)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ('{"T_mult": 0.5}', r"T_mult must be a finite number in \[1, 1000\]; got 0.5"),
        ('{"T_0": 4, "restart_warmup_steps": 4}', "restart_warmup_steps must be < T_0=4"),
        ('{"eta_min": 0.1}', "eta_min must be < the initial lr of every param group"),
        ('{"num_cycles": 20}', "num_cycles"),
        ('{"T_mul": 2}', "did you mean 'T_mult'"),
    ],
)
def test_sgdr_trainer_checks_its_schedule_when_it_is_built(tmp_path: Path, kwargs: str, message: str) -> None:
    from hf_sgdr.training import SGDRCallback, SGDRTrainer

    args = _cli_args(tmp_path, "--lr_scheduler_kwargs", kwargs)
    model, data = _tiny_lm()
    with pytest.raises(ValueError, match=message):
        SGDRTrainer(model=model, args=args, train_dataset=data)
    with pytest.raises(ValueError, match=message):
        Trainer(model=model, args=args, train_dataset=data, callbacks=[SGDRCallback(save_snapshots=False)])
