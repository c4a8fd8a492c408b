"""The `hf-sgdr` console command: inspect a schedule (`describe`, `plot`) before spending compute on it, then
evaluate a run's snapshot ensemble (`evaluate`) and publish it (`push`)."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from ._version import __version__
from .atomic import check_output_file
from .local_paths import user_path
from .redaction import redact
from .registration import SCHEDULER_KWARGS, normalize_scheduler_kwargs
from .schedule import CycleInfo, SGDRSchedule, build_schedule
from .schedule_parameters import NUM_TRAINING_STEPS, SCHEDULE_PARAMETERS
from .snapshots.cli import add_snapshot_commands
from .validation import check_float


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags (`--T_mul` must not silently mean `--T_mult`); an unknown flag gets a suggestion."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """As argparse's, but a flag no parser took is reported by the subcommand given (its name, its flags)."""
        argv = list(sys.argv[1:] if args is None else args)
        self._refuse_unknown_flags(argv)
        parsed, extras = self.parse_known_args(argv, namespace)
        if extras:
            self._subcommand_parser(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _refuse_unknown_flags(self, argv: list[str]) -> None:
        """Report unknown `--flags` first, by the parser they were given to (this one before the subcommand's name,
        the subcommand's after it): argparse would report a misspelled required flag as missing, unnamed."""
        subcommands = self._subcommands()
        parser: argparse.ArgumentParser = self
        flags = set(_option_strings(parser, nested=False))
        unknown: list[str] = []
        for token in argv:
            if token == "--":
                break
            if parser is self and token in subcommands:
                if unknown:
                    break
                parser = subcommands[token]
                flags = set(_option_strings(parser, nested=False))
                continue
            name = token.split("=", 1)[0]
            # A name holding a space is a value, as argparse takes it (`--commit-message "--fix: x"`).
            if name.startswith("--") and " " not in name and name not in flags:
                unknown.append(token)
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")

    def _subcommands(self) -> dict[str, argparse.ArgumentParser]:
        """This parser's subcommands by name (none for a subcommand's parser)."""
        return {
            name: sub
            for action in self._actions
            if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()
        }

    def _subcommand_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The parser of the subcommand `parsed` names (this parser when it names none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and action.dest in vars(parsed):
                return action.choices.get(getattr(parsed, action.dest), self)
        return self

    def error(self, message: str) -> None:  # type: ignore[override]
        """One line on stderr, `prog: error: message`, exit status 2 (no usage block: `--help` shows it)."""
        commands = self._subcommands()
        if message == "the following arguments are required: command" and commands:
            message = f"give a command: {', '.join(commands)} (hf-sgdr COMMAND --help for its flags)"
        if message.startswith("unrecognized arguments:"):
            known = sorted(set(_option_strings(self)))
            for flag in message.split(":", 1)[1].split():
                name = flag.split("=")[0]
                close = difflib.get_close_matches(name, known, n=1) if flag.startswith("--") else []
                owners = [command for command, sub in commands.items() if name in _option_strings(sub)]
                if name == "--token":
                    message += " (the Hub token comes from HF_TOKEN or `hf auth login`, never the command line)"
                elif owners:
                    message += f" (a flag of {', '.join(owners)}: give it after the command)"
                elif close and close[0] != name:
                    message += f" (did you mean {close[0]}?)"
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def one_line(message: object) -> str:
    """`message` on one line, tokens redacted: what `hf-sgdr` prints for an error."""
    return redact("; ".join(line.strip() for line in str(message).splitlines() if line.strip()))


def _option_strings(parser: argparse.ArgumentParser, *, nested: bool = True) -> Iterator[str]:
    """Every `--flag` of `parser`, and of its subcommands when `nested`."""
    for action in parser._actions:
        yield from (option for option in action.option_strings if option.startswith("--"))
        if nested and isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _option_strings(sub)


def _add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("schedule (same names as lr_scheduler_kwargs)")
    for parameter in SCHEDULE_PARAMETERS:
        if parameter.shape:
            group.add_argument(f"--{parameter.name}", default=None, metavar="VALUE", help=parameter.help)
    group.add_argument("--num_training_steps", required=True, help=NUM_TRAINING_STEPS.help)
    group.add_argument(
        "--lr", nargs="+", default=["5e-5"], metavar="LR", help="initial lr of each param group (default 5e-5)"
    )


def schedule_from_arguments(args: argparse.Namespace) -> tuple[SGDRSchedule, int, list[float]]:
    """Build the schedule, the budget and the group lrs from parsed flags (validated like the factory)."""
    given = {name: getattr(args, name) for name in SCHEDULER_KWARGS if getattr(args, name, None) is not None}
    options = normalize_scheduler_kwargs(given)
    budget = NUM_TRAINING_STEPS.check(args.num_training_steps)
    schedule = build_schedule(options.pop("T_0", None), num_training_steps=budget, **options)
    lrs = [check_float("lr", x, minimum=0.0, min_open=True) for x in args.lr]
    schedule.check_floors(lrs)  # as the scheduler refuses them: a floor at or above a peak, one floor too few
    return schedule, budget, lrs


#: `describe` shows at most this many cycles: the first and the last halves (a summary, whatever the count).
MAX_DESCRIBED_CYCLES = 200


def _cycle_json(schedule: SGDRSchedule, row: CycleInfo, max_lr: float, group: int) -> dict[str, float | int]:
    """One cycle for `describe --json`: `last_lr` (the lr of its last step) and `floor` (its decayed eta_min)."""
    values = row._asdict()
    values["last_lr"] = values.pop("min_lr")
    values["floor"] = schedule.cycle_bounds(row.cycle, max_lr, group)[1]
    return values


def _describe(args: argparse.Namespace) -> int:
    schedule, budget, lrs = schedule_from_arguments(args)
    tables = [(group, lr, schedule.describe(budget, lr, group, MAX_DESCRIBED_CYCLES)) for group, lr in enumerate(lrs)]
    count = schedule.count_cycles(budget)
    if args.json:
        payload: dict[str, Any] = {"schedule": schedule.to_dict(), "num_cycles": count}
        groups = [
            {"group": group, "lr": lr, "cycles": [_cycle_json(schedule, row, lr, group) for row in rows]}
            for group, lr, rows in tables
        ]
        payload["cycles"] = groups[0]["cycles"]
        if len(groups) > 1:
            payload["groups"] = groups
        print(json.dumps(payload, indent=2))
    else:
        for group, lr, rows in tables:
            if len(tables) > 1:
                print(f"param group {group} (lr {lr:g})")
            print(f"{'cycle':>5} {'start':>9} {'end':>9} {'length':>8} {'max lr':>11} {'last lr':>11} {'floor':>11}")
            previous = -1
            for row in rows:
                if row.cycle and row.cycle != previous + 1:
                    print(f"{'...':>5} {row.cycle - previous - 1} more cycles")
                previous = row.cycle
                end = f"{row.end}" + ("*" if row.end > budget else "")
                floor = schedule.cycle_bounds(row.cycle, lr, group)[1]
                print(
                    f"{row.cycle:>5} {row.start:>9} {end:>9} {row.length:>8} {row.max_lr:>11.4g} "
                    f"{row.min_lr:>11.4g} {floor:>11.4g}"
                )
        rows = tables[0][2]
        print(
            "last lr: the lr of the cycle's last step (its snapshot); floor: eta_min (decayed), which no step reaches"
        )
        if rows and rows[-1].end > budget:
            print(f"* the last cycle runs past the budget of {budget} steps")
        restarts = schedule.count_restarts(budget - 1)
        print(f"snapshots at steps: {schedule.cycle_ends_text(budget)}  (restarts: {restarts})")
    _print_budget_warnings(schedule, budget, lrs)
    return 0


def _print_budget_warnings(schedule: SGDRSchedule, budget: int, lrs: list[float]) -> None:
    """What `describe` and `plot` both say about a budget that ends mid-cycle or a floor the lrs reach."""
    for warning in schedule.budget_warnings(budget, lrs):
        print(f"warning: {warning}", file=sys.stderr)


def _plot(args: argparse.Namespace) -> int:
    from .plotting import image_format, plot_schedule

    check_output_file(args.output, "--output", folder_must_exist=True)
    image_format(args.output, "--output")
    schedule, budget, lrs = schedule_from_arguments(args)
    plot_schedule(schedule, budget, lrs, path=args.output)
    print(f"wrote {args.output}")
    _print_budget_warnings(schedule, budget, lrs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full `hf-sgdr` parser with every subcommand."""
    parser = _Parser(prog="hf-sgdr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hf-sgdr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser("describe", help="table of cycles: start, length, max lr, last lr and floor")
    _add_schedule_arguments(describe)
    describe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    describe.set_defaults(handler=_describe)
    plot = commands.add_parser(
        "plot", help="picture (PNG, SVG, PDF, ...) of lr against step with restarts and snapshot points"
    )
    _add_schedule_arguments(plot)
    plot.add_argument(
        "-o",
        "--output",
        default="lr_schedule.png",
        type=user_path,
        help="picture to write, in the format its suffix names: .png, .svg, .pdf, ... (default lr_schedule.png)",
    )
    plot.set_defaults(handler=_plot)
    add_snapshot_commands(commands)
    return parser


#: The extra that brings each optional package a command may need.
_EXTRA_OF_PACKAGE = {"datasets": "recipes", "evaluate": "recipes", "matplotlib": "plot", "peft": "peft"}


def missing_package_message(error: ImportError) -> str | None:
    """One line for an optional package that is not installed (`None` for any other import failure, e.g. a name
    missing from an installed package of another version)."""
    if isinstance(error, ModuleNotFoundError) and error.name in _EXTRA_OF_PACKAGE:
        package = error.name
        return f"this needs {package}, which is not installed: pip install 'hf-sgdr[{_EXTRA_OF_PACKAGE[package]}]'"
    return str(error) if "pip install" in str(error) else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; a bad value exits with status 2 and a one-line message naming it, a missing optional package
    with status 1 and the extra that brings it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:
        parser.exit(2, f"hf-sgdr {args.command}: error: {one_line(error)}\n")
    except ImportError as error:
        message = missing_package_message(error)
        if message is None:
            raise
        parser.exit(1, f"hf-sgdr {args.command}: error: {one_line(message)}\n")


if __name__ == "__main__":
    sys.exit(main())
