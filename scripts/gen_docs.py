"""Write the generated parts of the docs from the code: the schedule-parameter tables of `docs/parameters.md` and
`README.md`, made from `hf_sgdr.schedule_parameters.SCHEDULE_PARAMETERS`.

    python scripts/gen_docs.py           # rewrite the generated blocks in place
    python scripts/gen_docs.py --check   # exit 1, naming the files, if a generated block is out of date

A generated block lies between `<!-- BEGIN GENERATED: <name> -->` and `<!-- END GENERATED: <name> -->`; the text
around it is written by hand. `tests/test_docs.py` fails when a block differs from what this script writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/gen_docs.py` from a checkout
    sys.path.insert(0, str(REPO))

from hf_sgdr.schedule_parameters import MAX_STEPS, SCHEDULE_PARAMETERS, ScheduleParameter  # noqa: E402

COMMAND = "python scripts/gen_docs.py"


def _number(value: float, is_int: bool) -> str:
    if value == MAX_STEPS:
        return "10^9"
    if is_int or float(value).is_integer():
        return str(int(value))
    return repr(value)


def _range(p: ScheduleParameter) -> str:
    """The accepted range as an interval (`[1, 10^9]`, `(0, 1]`) or a bound (`>= 0`)."""
    if p.type is bool:
        return "true / false"
    if p.minimum is None and p.maximum is None:
        return "see the meaning"
    is_int = p.type is int
    if p.maximum is None:
        return f"{'>' if p.min_open else '>='} {_number(p.minimum, is_int)}"
    if p.minimum is None:
        return f"{'<' if p.max_open else '<='} {_number(p.maximum, is_int)}"
    low = "(" if p.min_open else "["
    high = ")" if p.max_open else "]"
    return f"{low}{_number(p.minimum, is_int)}, {_number(p.maximum, is_int)}{high}"


def _type(p: ScheduleParameter) -> str:
    if p.name == "cycles":
        return "list or string"
    name = p.type.__name__
    return f"{name} or list of {name} (one per param group)" if p.per_group else name


def _default(p: ScheduleParameter) -> str:
    if p.default is None:
        return "none"
    if p.type is bool:
        return "false" if not p.default else "true"
    return _number(p.default, p.type is int)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def parameter_table() -> str:
    """The full table of `docs/parameters.md`: one row per parameter, in declaration order."""
    lines = [
        "| name | type | default | range | also accepted as | `SGDRTrainer` / command line | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in SCHEDULE_PARAMETERS:
        aliases = ", ".join(f"`{a}`" for a in p.aliases) or ""
        option = f"`sgdr_{p.name}` / `--{p.name}`" if p.option else "`lr_scheduler_kwargs` only"
        lines.append(
            f"| `{p.name}` | {_type(p)} | {_default(p)} | {_range(p)} | {aliases} | {option} | {_escape(p.help)} |"
        )
    return "\n".join(lines)


def readme_parameter_table() -> str:
    """The README's short table: each parameter and its help text."""
    lines = ["| key | meaning |", "|---|---|"]
    lines += [f"| `{p.name}` | {_escape(p.help)} |" for p in SCHEDULE_PARAMETERS]
    return "\n".join(lines)


def _markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- BEGIN GENERATED: {name} (by `{COMMAND}`; do not edit by hand) -->",
        f"<!-- END GENERATED: {name} -->",
    )


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with the block `name` replaced by `body`; `ValueError` if the markers are missing."""
    begin, end = _markers(name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), flags=re.S)
    if not pattern.search(text):
        raise ValueError(f"no generated block {name!r}: expected the line {begin!r} and later {end!r}")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1)


#: file (relative to the repository) -> [(block name, function writing its body)]
BLOCKS = {
    "docs/parameters.md": [("parameters", parameter_table)],
    "README.md": [("parameters", readme_parameter_table)],
}


def generated(path: str) -> str:
    """The file at `path` as this script would write it."""
    text = (REPO / path).read_text(encoding="utf-8")
    for name, body in BLOCKS[path]:
        text = replace_block(text, name, body())
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report the files that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in BLOCKS:
        new = generated(path)
        if new != (REPO / path).read_text(encoding="utf-8"):
            stale.append(path)
            if not args.check:
                (REPO / path).write_text(new, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run `{COMMAND}`", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
