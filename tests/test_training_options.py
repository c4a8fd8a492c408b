"""The SGDR options: defined once, on the command line through `SGDRTrainingArguments`, validated with
errors that name the option, merged with `lr_scheduler_kwargs`, and routed by `SGDRTrainer`."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from helpers.training import byte_lm_data, tiny_gpt2, training_args
from transformers import HfArgumentParser, Trainer, TrainingArguments
from transformers.trainer_utils import SchedulerType

from hf_sgdr.training import (
    SGDRCallback,
    SGDROptions,
    SGDRTrainer,
    SGDRTrainingArguments,
)
from hf_sgdr.training.arguments import merge_scheduler_kwargs


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sgdr_T_0": 0}, r"sgdr_T_0 must be an integer in \[1, 1e\+09\]; got 0"),
        ({"sgdr_T_0_epochs": -1}, r"sgdr_T_0_epochs must be a finite number > 0; got -1"),
        ({"sgdr_T_mult": 0.5}, r"sgdr_T_mult must be a finite number in \[1, 1000\]; got 0.5"),
        ({"sgdr_lr_decay": 0}, r"sgdr_lr_decay must be a finite number in \(0, 1\]; got 0"),
        ({"swa_start": 1.0}, r"swa_start must be a finite number in \[0, 1\); got 1.0"),
        ({"max_snapshots": 0}, r"max_snapshots must be an integer >= 1; got 0"),
        ({"save_snapshots": "maybe"}, r"save_snapshots must be a boolean"),
        (
            {"sgdr_T_0": 4, "sgdr_num_cycles": 3},
            r"at most one of sgdr_T_0, sgdr_T_0_epochs, sgdr_num_cycles and sgdr_cycles",
        ),
        ({"restart_from": "middle"}, r"restart_from must be one of last, first; got .middle."),
        ({"sgdr_cycles": "0.5:1,abc"}, r"cycles\[1\] length must be a finite number > 0; got .abc."),
    ],
)
def test_bad_options_name_the_option_and_the_accepted_range(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SGDROptions(**options)


def test_training_arguments_put_the_options_on_the_command_line(tmp_path: Path) -> None:
    parser = HfArgumentParser(SGDRTrainingArguments)
    text = parser.format_help()
    for flag in ("--sgdr_T_0", "--sgdr_T_0_epochs", "--sgdr_num_cycles", "--max_snapshots", "--swa_start"):
        assert flag in text
    assert "Keep only the newest K snapshots" in text
    command = f"--output_dir {tmp_path} --sgdr_T_0 8 --sgdr_T_mult 1.5 --swa_start 0.5 --max_snapshots 3"
    (args,) = parser.parse_args_into_dataclasses(
        [*command.split(), "--sgdr_reset_optimizer_state", "true", "--no_save_snapshots"]
    )
    assert args.lr_scheduler_type is SchedulerType.SGDR  # the default of SGDRTrainingArguments
    assert (args.sgdr_T_0, args.sgdr_T_mult, args.swa_start, args.max_snapshots) == (8, 1.5, 0.5, 3)
    assert args.sgdr_reset_optimizer_state is True and args.save_snapshots is False
    assert args.scheduler_kwargs() == {"T_0": 8, "T_mult": 1.5, "reset_optimizer_state": True}
    assert pickle.loads(pickle.dumps(args)).sgdr_T_0 == 8
    # the options alone, beside the stock TrainingArguments (how the recipes' parsers use them)
    options, plain = HfArgumentParser((SGDROptions, TrainingArguments)).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--sgdr_num_cycles", "5"]
    )
    assert options.sgdr_num_cycles == 5 and plain.lr_scheduler_type is SchedulerType.LINEAR


def test_T_0_in_epochs_rounds_half_up_and_needs_a_length() -> None:
    assert SGDROptions(sgdr_T_0_epochs=0.5).scheduler_kwargs(steps_per_epoch=5) == {"T_0": 3}
    assert SGDROptions(sgdr_T_0_epochs=0.01).scheduler_kwargs(steps_per_epoch=5) == {"T_0": 1}
    with pytest.raises(ValueError, match="sgdr_T_0_epochs needs the number of optimizer steps per epoch"):
        SGDROptions(sgdr_T_0_epochs=1.0).scheduler_kwargs(steps_per_epoch=None)


def test_options_and_lr_scheduler_kwargs_merge_and_clashes_are_named() -> None:
    merged = merge_scheduler_kwargs({"eta_min": "1e-6", "cycle_limit": "null"}, {"T_0": 4})
    assert merged == {"eta_min": "1e-6", "cycle_limit": None, "T_0": 4}
    with pytest.raises(ValueError, match=r"T_mult \(option sgdr_T_mult\)"):
        merge_scheduler_kwargs({"T_mult": 2}, {"T_mult": 1.5})
    with pytest.raises(ValueError, match="T_0=4 and num_cycles=3"):
        merge_scheduler_kwargs({"num_cycles": 3}, {"T_0": 4})
    with pytest.raises(ValueError, match="unknown key"):
        merge_scheduler_kwargs({"T0": 4}, {})


def test_the_caller_s_arguments_still_train_a_stock_trainer_with_linear(tmp_path: Path) -> None:
    data = byte_lm_data(8)
    args = training_args(tmp_path, max_steps=4)
    sgdr = SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=data, sgdr_T_0=2, save_snapshots=False)
    assert sgdr.args is not args and sgdr.args.output_dir == args.output_dir
    stock = Trainer(model=tiny_gpt2(), args=args, train_dataset=data)
    stock.train()
    assert args.lr_scheduler_type is SchedulerType.LINEAR and type(stock.lr_scheduler).__name__ == "LambdaLR"
    assert set(stock.lr_scheduler.get_last_lr()) == {0.0}  # linear decay to 0 at the last step


def test_star_restarts_imply_the_optimizer_reset() -> None:
    assert SGDROptions(restart_from="first").resets_optimizer_state
    assert SGDROptions(sgdr_reset_optimizer_state=True).resets_optimizer_state
    assert not SGDROptions().resets_optimizer_state


def test_options_changed_after_they_were_made_are_refused_where_they_are_taken(tmp_path: Path) -> None:
    """A dataclass's fields can be set later; the front ends check the copy they take."""
    options = SGDROptions(sgdr_T_0=2)
    options.restart_from = "frist"
    with pytest.raises(ValueError, match="restart_from must be one of last, first; got 'frist'"):
        SGDRCallback(options)
    args = SGDRTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    args.max_snapshots = 0
    with pytest.raises(ValueError, match="max_snapshots must be an integer >= 1; got 0"):
        SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(8))


@pytest.mark.parametrize("cycles", ["0.5:1,0.5:0.5", "2:1,2:0.5"])
def test_cycle_lists_without_max_steps_are_checked_at_init_and_train(tmp_path: Path, cycles: str) -> None:
    """Fractions of a budget known only at `train()` (and steps) pass the init check; a bad list does not."""
    args = training_args(tmp_path, num_train_epochs=2, max_steps=-1, per_device_train_batch_size=2)  # 2 steps an epoch
    trainer = SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(4), sgdr_cycles=cycles)
    trainer.train()
    assert trainer.lr_scheduler.schedule.cycle_ends(4) == [2, 4]
    with pytest.raises(ValueError, match=r"fractions of the budget must sum to 1; they sum to 0\.9"):
        SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(4), sgdr_cycles="0.5:1,0.4:0.5")


def test_callback_refuses_schedule_options_it_cannot_apply() -> None:
    with pytest.raises(ValueError, match="SGDRCallback does not build the scheduler, so it cannot apply sgdr_T_mult"):
        SGDRCallback(sgdr_T_mult=2.0)
    assert SGDRCallback(SGDROptions(sgdr_T_0=5).without_schedule(), max_snapshots=2).options.max_snapshots == 2


def test_callback_needs_an_sgdr_scheduler(tmp_path: Path) -> None:
    trainer = Trainer(
        model=tiny_gpt2(),
        args=training_args(tmp_path, max_steps=2, lr_scheduler_type="cosine"),
        train_dataset=byte_lm_data(8),
    )
    SGDRCallback().attach(trainer)
    with pytest.raises(TypeError, match="LambdaLR lacks position, is_at_cycle_end"):
        trainer.train()


def test_sgdr_trainer_routes_options_and_switches_the_default_schedule(tmp_path: Path) -> None:
    data = byte_lm_data(8)
    args = SGDRTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", sgdr_T_0=7, max_snapshots=4)
    trainer = SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=data, max_snapshots=2)
    assert (trainer.sgdr_options.sgdr_T_0, trainer.sgdr_options.max_snapshots) == (7, 2)  # keywords win
    assert trainer.sgdr_callback.options.sgdr_T_0 is None  # the callback gets the snapshot options only
    # after the flow control that decides when to save, ahead of the reporters
    assert [type(cb).__name__ for cb in trainer.callback_handler.callbacks[:2]] == [
        "DefaultFlowCallback",
        "SGDRCallback",
    ]
    trainer.create_optimizer()
    assert trainer.create_scheduler(num_training_steps=21).schedule.T_0 == 7

    plain = training_args(tmp_path, max_steps=4)  # lr_scheduler_type "linear", the TrainingArguments default
    assert SGDRTrainer(model=tiny_gpt2(), args=plain, train_dataset=data).args.lr_scheduler_type is SchedulerType.SGDR
    assert plain.lr_scheduler_type is SchedulerType.LINEAR  # the caller's arguments are not changed
    with pytest.raises(
        ValueError, match="SGDRTrainer trains with lr_scheduler_type='sgdr'; got lr_scheduler_type='cosine'"
    ):
        SGDRTrainer(model=tiny_gpt2(), args=training_args(tmp_path, lr_scheduler_type="cosine"), train_dataset=data)
    with pytest.raises(ValueError, match=r"set both in lr_scheduler_kwargs and as SGDR options: T_0 .* \(2 and 3\)"):
        clash = training_args(tmp_path, max_steps=4, lr_scheduler_kwargs={"T_0": 2})
        SGDRTrainer(model=tiny_gpt2(), args=clash, train_dataset=data, sgdr_T_0=3).train()
    # The README's two snippets together: the same value in both places is one setting.
    twice = training_args(tmp_path, max_steps=4, lr_scheduler_kwargs={"num_cycles": 2})
    trainer = SGDRTrainer(model=tiny_gpt2(), args=twice, train_dataset=data, sgdr_num_cycles=2)
    trainer.create_optimizer()
    assert trainer.create_scheduler(num_training_steps=4).schedule.cycle_ends(4) == [2, 4]


@pytest.mark.parametrize(
    ("keyword", "suggested"),
    [("sgdr_save_snapshots", "save_snapshots"), ("sgdr_T0", "sgdr_T_0"), ("train_datset", "train_dataset")],
)
def test_a_mistyped_keyword_is_refused_with_the_closest_name_of_either_side(
    tmp_path: Path, keyword: str, suggested: str
) -> None:
    args = training_args(tmp_path, max_steps=4)
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{keyword}'; did you mean '{suggested}'\?"):
        SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(4), **{keyword: 1})


def test_a_trainer_subclass_that_takes_any_keyword_keeps_its_own(tmp_path: Path) -> None:
    class Base(Trainer):
        def __init__(self, *args: object, extra: int = 0, **kwargs: object) -> None:
            self.extra = extra
            super().__init__(*args, **kwargs)

    class Combined(SGDRTrainer, Base):
        pass

    trainer = Combined(model=tiny_gpt2(), args=training_args(tmp_path, max_steps=4), extra=3)
    assert trainer.extra == 3
