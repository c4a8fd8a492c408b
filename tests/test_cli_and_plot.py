"""`hf-sgdr describe` / `hf-sgdr plot` and `hf_sgdr.plot_schedule`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

import hf_sgdr
from hf_sgdr import SGDRSchedule, plot_schedule
from hf_sgdr.cli import build_parser, main
from hf_sgdr.plotting import MAX_PLOTTED_POINTS, plotted_steps


def test_describe_prints_the_cycle_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--T_mult", "2", "--num_cycles", "4", "--num_training_steps", "1000", "--lr", "1e-4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["cycle", "start", "end", "length", "max", "lr", "last", "lr", "floor"]
    assert [line.split()[:4] for line in out[1:5]] == [
        ["0", "0", "66", "66"],
        ["1", "66", "198", "132"],
        ["2", "198", "462", "264"],
        ["3", "462", "1000", "538"],  # the last cycle absorbs the rounding, never shorter than the rule's 528
    ]
    assert out[5].startswith("last lr: the lr of the cycle's last step")
    assert "snapshots at steps: [66, 198, 462, 1000]" in out[6]


def test_describe_shows_the_last_lr_of_each_cycle_and_its_floor(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--T_0", "10", "--eta_min", "1e-5", "--lr_decay", "0.5", "--num_training_steps", "30", "--lr", "1e-3"]
    assert main(["describe", *flags]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:4]]
    schedule = SGDRSchedule(T_0=10, eta_min=1e-5, lr_decay=0.5)
    for cycle, row in enumerate(rows):
        assert float(row[5]) == pytest.approx(schedule.lr(10 * cycle + 9, 1e-3), rel=1e-3)  # last step's lr
        assert float(row[6]) == pytest.approx(1e-5 * 0.5**cycle)  # the floor
        assert float(row[5]) > float(row[6])
    assert main(["describe", *flags, "--json"]) == 0
    cycles = json.loads(capsys.readouterr().out)["cycles"]
    assert [c["floor"] for c in cycles] == pytest.approx([1e-5, 5e-6, 2.5e-6])
    assert cycles[0]["last_lr"] == pytest.approx(schedule.lr(9, 1e-3)) and "min_lr" not in cycles[0]


def test_describe_shows_every_param_group(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--T_0", "10", "--eta_min", "1e-5,1e-6", "--num_training_steps", "30", "--lr", "1e-3", "5e-4"]
    assert main(["describe", *flags]) == 0
    out = capsys.readouterr().out.splitlines()
    schedule = SGDRSchedule(T_0=10, eta_min=[1e-5, 1e-6])
    for group, (lr, floor) in enumerate(((1e-3, 1e-5), (5e-4, 1e-6))):
        start = out.index(f"param group {group} (lr {lr:g})")
        for cycle, line in enumerate(out[start + 2 : start + 5]):
            row = line.split()
            assert float(row[4]) == pytest.approx(lr) and float(row[6]) == pytest.approx(floor)
            assert float(row[5]) == pytest.approx(schedule.lr(10 * cycle + 9, lr, group), rel=1e-3)
    assert main(["describe", *flags, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [g["lr"] for g in payload["groups"]] == [1e-3, 5e-4] and payload["cycles"] == payload["groups"][0]["cycles"]
    assert [c["floor"] for c in payload["groups"][1]["cycles"]] == pytest.approx([1e-6] * 3)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_sgdr.cli", *args], capture_output=True, text=True)


def test_describe_refuses_a_floor_at_or_above_the_peak() -> None:
    result = _run_cli("describe", "--eta_min", "1", "--lr", "1e-4", "--num_training_steps", "100")
    assert result.returncode == 2 and result.stdout == ""
    assert "eta_min must be < the initial lr of every param group; got eta_min=1.0 >= lr=0.0001" in result.stderr


def test_abbreviated_flags_are_refused_with_the_right_flag_suggested() -> None:
    result = _run_cli("describe", "--T_mul", "2", "--T_0", "10", "--num_training_steps", "100")
    assert result.returncode == 2 and result.stdout == ""
    assert "unrecognized arguments: --T_mul (did you mean --T_mult?)" in result.stderr


def test_a_misspelled_required_flag_is_named_not_reported_missing() -> None:
    """argparse would say `--num_training_steps` is required; the misspelling is what the user needs to see. A flag
    before the subcommand's name is the top-level parser's to report."""
    result = _run_cli("describe", "--num_trainig_steps", "100", "--T_0", "10")
    assert result.returncode == 2 and result.stderr == (
        "hf-sgdr describe: error: unrecognized arguments: --num_trainig_steps (did you mean --num_training_steps?)\n"
    )
    result = _run_cli("--bogus", "describe", "--num_training_steps", "100", "--T_0", "10")
    assert result.returncode == 2 and result.stderr == "hf-sgdr: error: unrecognized arguments: --bogus\n"
    result = _run_cli("--num_training_steps", "100", "describe")
    assert result.returncode == 2 and result.stderr == (
        "hf-sgdr: error: unrecognized arguments: --num_training_steps (a flag of describe, plot: give it after the "
        "command)\n"
    )
    # A value that starts with "--" but holds a space is a value, as argparse takes it.
    message = "--fix: drop the bad cycle"
    parsed = build_parser().parse_args(["push", "out", "--repo-id", "me/x", "--commit-message", message])
    assert parsed.commit_message == message
    result = _run_cli("push", "--commit-mesage=fix the bug", "out", "--repo-id", "me/x")  # a misspelled flag still
    assert result.returncode == 2 and "--commit-mesage=fix the bug (did you mean --commit-message?)" in result.stderr
    result = _run_cli()  # no command: the commands, not argparse's "required: command"
    assert result.returncode == 2 and result.stderr == (
        "hf-sgdr: error: give a command: describe, plot, evaluate, push (hf-sgdr COMMAND --help for its flags)\n"
    )


def test_a_flag_of_another_subcommand_is_reported_by_the_one_given(capsys: pytest.CaptureFixture[str]) -> None:
    """Suggestions come from the subcommand's own flags (a schedule flag is not `evaluate`'s), the error line
    names the subcommand, a token on the command line is pointed to HF_TOKEN; `--version` answers."""
    result = _run_cli("evaluate", "out", "--T_0", "3")
    assert result.returncode == 2
    assert result.stderr == "hf-sgdr evaluate: error: unrecognized arguments: --T_0\n"
    result = _run_cli("push", "out", "--repo-id", "me/x", "--token", "hf_" + "a1B2" * 9)
    assert result.returncode == 2 and "a1B2" not in result.stderr
    assert result.stderr.startswith("hf-sgdr push: error: unrecognized arguments: --token")
    assert "comes from HF_TOKEN or `hf auth login`" in result.stderr and "--json" not in result.stderr
    result = _run_cli("describe", "--T_0", "3", "--num_training_steps", "9", "--jsn")
    assert result.stderr == "hf-sgdr describe: error: unrecognized arguments: --jsn (did you mean --json?)\n"
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"hf-sgdr {hf_sgdr.__version__}\n"


def test_plot_refuses_an_output_folder_that_does_not_exist(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "lr.png"
    result = _run_cli("plot", "--T_0", "10", "--num_training_steps", "40", "-o", str(target))
    assert result.returncode == 2 and not (tmp_path / "missing").exists()
    assert f"the folder of --output {target} does not exist" in result.stderr


def test_plot_writes_the_format_its_output_names_and_refuses_others(tmp_path: Path) -> None:
    """`-o lr.svg` is an SVG (it was a PNG under any name); a path without a picture's suffix, or through a file,
    is refused before drawing, in one line naming --output."""
    flags = ["plot", "--T_0", "10", "--num_training_steps", "40", "-o"]
    assert main([*flags, str(tmp_path / "lr.svg")]) == 0
    assert b"<svg" in (tmp_path / "lr.svg").read_bytes()[:1000]
    result = _run_cli(*flags, str(tmp_path / "lr"))
    assert result.returncode == 2 and not (tmp_path / "lr").exists()
    assert result.stderr.startswith(f"hf-sgdr plot: error: --output {tmp_path / 'lr'} must end in one of ")
    assert ".png" in result.stderr and ".svg" in result.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    result = _run_cli(*flags, str(notes / "lr.png"))
    assert result.returncode == 2 and result.stderr == (
        f"hf-sgdr plot: error: --output {notes / 'lr.png'}: {notes} is a file, not a folder; give a path inside a "
        "folder\n"
    )


def test_path_flags_expand_the_home_folder_the_shell_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o=~/lr.png` reaches the program unexpanded (a shell expands `~` only at a word's start): the command expands
    it, for every path flag, instead of writing into a folder named `~`."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "--T_0", "10", "--num_training_steps", "40", "-o=~/lr.png"]) == 0
    assert (tmp_path / "lr.png").is_file() and not (tmp_path / "~").exists()
    assert f"wrote {tmp_path / 'lr.png'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", "~/no-run", "--validation_file=~/data.csv", "--output_json=~/report.json"])
    err = capsys.readouterr().err
    assert f"--validation_file {tmp_path / 'data.csv'}" in err and "~" not in err, err


def test_describe_json_and_pitfall_warning(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--T_0", "300", "--num_training_steps", "1000", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["schedule"]["T_0"] == 300 and [c["end"] for c in data["cycles"]] == [300, 600, 900, 1200]
    assert "mid-cycle" in captured.err


def test_bad_flag_exits_2_naming_the_parameter() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hf_sgdr.cli", "describe", "--T_mult", "0.5", "--num_training_steps", "100"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "T_mult must be a finite number in [1, 1000]; got '0.5'" in result.stderr


def test_plot_command_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lr.png"
    assert main(["plot", "--T_0", "50", "--T_mult", "2", "--num_training_steps", "350", "-o", str(out)]) == 0
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 200 and image.shape[1] > 500
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    assert "warning" not in capsys.readouterr().err  # 350 steps end on the third cycle's end
    # The README's example ends 37 % into a cycle: plot says so, as describe does.
    readme = ["--T_0", "100", "--T_mult", "1.5", "--num_training_steps", "1000"]
    assert main(["plot", *readme, "-o", str(tmp_path / "readme.png")]) == 0
    plotted = capsys.readouterr().err
    assert main(["describe", *readme]) == 0
    assert "warning: training ends mid-cycle: step 1000 is 37% into cycle 4" in plotted == capsys.readouterr().err


def test_plot_schedule_draws_each_group_restarts_and_snapshots(tmp_path: Path) -> None:
    schedule = SGDRSchedule(T_0=20, T_mult=2, warmup_steps=5)
    figure = plot_schedule(
        schedule,
        145,
        [0.1, 0.01],
        group_names=["encoder", "head"],
        metric_by_snapshot={25: 0.8, 65: 0.85},
        path=tmp_path / "s.png",
    )
    axis = figure.axes[0]
    lines = [line for line in axis.get_lines() if line.get_label() in ("encoder", "head")]
    assert [line.get_label() for line in lines] == ["encoder", "head"]
    assert list(lines[0].get_ydata()) == [schedule.lr(t, 0.1) for t in range(145)]
    restarts = sorted(line.get_xdata()[0] for line in axis.get_lines() if line.get_linestyle() == "--")
    assert restarts == [25, 65]
    offsets = axis.collections[0].get_offsets()
    assert [int(x) for x, _ in offsets] == [25, 65, 145]
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert len(figure.axes) == 2  # the metric axis


def test_long_budgets_are_sampled_but_keep_every_boundary() -> None:
    schedule = SGDRSchedule(T_0=1000, T_mult=1.5)
    steps = plotted_steps(schedule, 2_000_000)
    assert len(steps) < 2 * MAX_PLOTTED_POINTS
    chosen = set(steps)
    assert all(end in chosen and end - 1 in chosen for end in schedule.cycle_ends(1_999_999))


def test_plot_with_several_metrics_keeps_every_mark_visible(tmp_path: Path) -> None:
    """One panel per metric under the lr (no marker over a snapshot dot), the ensemble's value across its
    panel, the legend outside the axes, and room on the right for the snapshot at the last step."""
    schedule = SGDRSchedule(T_0=63)
    steps = [63, 126, 189, 252, 315]
    figure = plot_schedule(
        schedule,
        315,
        [5e-5],
        metrics_by_snapshot={
            "accuracy": dict(zip(steps, [0.78, 0.78, 0.81, 0.80, 0.82], strict=True)),
            "nll": dict.fromkeys(steps, 0.5),
        },
        ensemble_metrics={"nll": 0.42},
        path=tmp_path / "p.png",
    )
    lr_axis, accuracy_axis, nll_axis = figure.axes
    assert [a.get_ylabel() for a in figure.axes] == ["learning rate", "accuracy", "nll"]
    assert not lr_axis.get_lines()[0].get_marker() or lr_axis.get_lines()[0].get_marker() == "None"
    assert [int(x) for x, _ in lr_axis.collections[0].get_offsets()] == steps  # the snapshot dots, alone
    assert list(accuracy_axis.get_lines()[0].get_ydata()) == [0.78, 0.78, 0.81, 0.80, 0.82]
    ensemble_line = [line for line in nll_axis.get_lines() if line.get_label() == "ensemble"]
    assert list(ensemble_line[0].get_ydata()) == [0.42, 0.42]
    assert lr_axis.get_xlim()[1] > 315 and lr_axis.collections[0].get_clip_on() is False
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend = figure.legends[0].get_window_extent(renderer)
    assert not any(legend.overlaps(axis.get_window_extent(renderer)) for axis in figure.axes)
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["learning rate", "snapshot", "ensemble"]


def test_the_top_level_help_describes_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    description = capsys.readouterr().out.split("positional arguments")[0]
    assert exited.value.code == 0
    assert all(f"`{command}`" in description for command in ("describe", "plot", "evaluate", "push")), description
