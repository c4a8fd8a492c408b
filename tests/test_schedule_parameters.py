"""One list of schedule parameters (`hf_sgdr.schedule_parameters`): every front end is made from it."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from hf_sgdr import AdaptiveSGDR, SGDRSchedule, SGDRScheduler
from hf_sgdr.registration import SCHEDULER_KWARGS, normalize_scheduler_kwargs
from hf_sgdr.schedule_parameters import PARAMETERS, SCHEDULE_PARAMETERS
from hf_sgdr.training import SGDROptions, SGDRTrainingArguments

README = Path(__file__).resolve().parents[1] / "README.md"


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def test_the_kwargs_keys_and_their_help_are_the_list() -> None:
    assert list(SCHEDULER_KWARGS) == [p.name for p in SCHEDULE_PARAMETERS]
    assert all(SCHEDULER_KWARGS[p.name] == p.help for p in SCHEDULE_PARAMETERS)


def test_the_schedule_fields_default_as_the_list_says() -> None:
    declared = {f.name: f.default for f in fields(SGDRSchedule) if f.name in PARAMETERS and f.name != "T_0"}
    assert declared == {name: PARAMETERS[name].default for name in declared}
    assert set(declared) == {p.name for p in SCHEDULE_PARAMETERS if p.shape} - {"T_0", "num_cycles"}


def test_the_options_are_the_listed_parameters_the_trainer_does_not_own() -> None:
    options = {f.name for f in fields(SGDROptions) if f.name.startswith("sgdr_")} - {"sgdr_T_0_epochs"}
    assert options == {f"sgdr_{p.name}" for p in SCHEDULE_PARAMETERS if p.option}
    assert {"sgdr_warmup_steps", "sgdr_eta_max"}.isdisjoint(options)  # TrainingArguments' warmup_steps / lr
    hints = typing.get_type_hints(SGDROptions)  # written out in the class, so that editors and type checkers see them
    for p in SCHEDULE_PARAMETERS:
        if p.option:
            assert hints[f"sgdr_{p.name}"] == (bool if p.type is bool else p.type | None), p.name
    help_texts = {f.name: f.metadata["help"] for f in fields(SGDROptions)}
    assert help_texts["sgdr_T_mult"].lower().startswith(PARAMETERS["T_mult"].help.lower())


def test_every_option_is_checked_by_its_declaration_and_named_as_an_option() -> None:
    for name, bad in (("T_0", 0), ("T_mult", 0.5), ("eta_min", -1), ("lr_decay", 0), ("restart_warmup_steps", -1)):
        with pytest.raises(ValueError, match=rf"^sgdr_{name} must be"):
            SGDROptions(**{f"sgdr_{name}": bad})
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            SGDRSchedule(T_0=10, **{name: bad}) if name != "T_0" else SGDRSchedule(T_0=bad)
    assert SGDROptions(sgdr_T_mult="1.5", sgdr_T_0="12").scheduler_kwargs() == {"T_mult": 1.5, "T_0": 12}


def test_command_lines_take_every_option_by_both_names(tmp_path: Path) -> None:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(SGDRTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--T_mult", "2", "--sgdr_eta_min", "1e-6", "--reset_optimizer_state"]
    )
    assert (args.sgdr_T_mult, args.sgdr_eta_min, args.sgdr_reset_optimizer_state) == (2.0, 1e-6, True)


def test_hf_sgdr_flags_are_the_shape_parameters() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hf_sgdr.cli", "describe", "--help"], capture_output=True, text=True, check=True
    ).stdout
    flags = set(re.findall(r"--([A-Za-z_0-9]+)", out))
    assert {p.name for p in SCHEDULE_PARAMETERS if p.shape} <= flags
    assert "reset_optimizer_state" not in flags


def test_the_readme_table_documents_every_parameter() -> None:
    rows = set(re.findall(r"^\| `([A-Za-z_0-9]+)` \|", README.read_text(), flags=re.M))
    assert {p.name for p in SCHEDULE_PARAMETERS} <= rows


def test_a_mistyped_keyword_is_refused_with_the_closest_name() -> None:
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) 'T_multi' \(did you mean 'T_mult'\?\)"):
        SGDRScheduler(_optimizer(), 10, T_multi=2)
    with pytest.raises(ValueError, match=r"'eta_mni' \(did you mean 'eta_min'\?\)"):
        normalize_scheduler_kwargs({"eta_mni": 0.1})
    with pytest.raises(TypeError, match=r"AdaptiveSGDR got unknown parameter\(s\) 'cycles'"):
        AdaptiveSGDR(_optimizer(), 10, cycles=[[5, 1]])
    with pytest.raises(TypeError, match="either schedule or the schedule parameters"):
        SGDRScheduler(_optimizer(), 10, schedule=SGDRSchedule(T_0=10))


def test_the_scheduler_takes_every_parameter_by_name() -> None:
    values = {"T_mult": 2.0, "eta_min": 0.01, "lr_decay": 0.5, "warmup_steps": 2, "warmup_start_lr": 0.001,
              "restart_warmup_steps": 1, "cycle_limit": 3, "eta_max": 0.2}  # fmt: skip
    scheduler = SGDRScheduler(_optimizer(), 4, **values)
    assert scheduler.schedule == SGDRSchedule(T_0=4, **values)
    adaptive = AdaptiveSGDR(_optimizer(), 4, **{k: v for k, v in values.items() if k != "T_mult"})
    assert adaptive.schedule.lr_decay == 0.5 and adaptive.schedule.cycle_limit == 3
