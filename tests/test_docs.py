"""The docs stay navigable and their generated parts stay true to the code and to the results files.

- `README.md` stays a front page (at most 250 lines); the guides live in `docs/`.
- Every relative link in README.md, BENCHMARKS.md, ARCHITECTURE.md, SECURITY.md, CHANGELOG.md and `docs/*.md`
  names a file or folder that exists.
- The parameter tables (`docs/parameters.md`, README.md) are what `scripts/gen_docs.py` writes from
  `SCHEDULE_PARAMETERS`, and BENCHMARKS.md's tables are what `benchmarks/summarize.py` writes from
  `benchmarks/results/`: a change on either side fails here until the command named in the message is run.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_README_LINES = 250
DOCS = sorted(
    [
        *(REPO / name for name in ("README.md", "BENCHMARKS.md", "ARCHITECTURE.md", "SECURITY.md", "CHANGELOG.md")),
        *REPO.glob("docs/*.md"),
    ]
)
GUIDES = ["index", "trainer", "accelerate", "ensembles", "parameters", "schedule", "safety", "benchmarks"]
#: [text](target) outside code spans; an image ![alt](target) too
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _script(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def test_the_readme_is_a_front_page_and_the_guides_exist() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move details into docs/"
    assert [g for g in GUIDES if not (REPO / "docs" / f"{g}.md").is_file()] == []
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    assert [g for g in GUIDES if g != "index" and f"({g}.md)" not in index] == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_names_an_existing_file(doc: Path) -> None:
    missing = []
    for target in LINK.findall(_without_code(doc.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert missing == [], f"{doc.relative_to(REPO)} links to missing files: {missing}"


def test_the_parameter_tables_are_generated_from_the_declarations() -> None:
    gen_docs = _script("scripts/gen_docs.py")
    for path in gen_docs.BLOCKS:
        current = (REPO / path).read_text(encoding="utf-8")
        assert current == gen_docs.generated(path), f"{path} is out of date; run `{gen_docs.COMMAND}`"


def test_the_benchmark_summary_is_generated_from_the_results_files() -> None:
    summarize = _script("benchmarks/summarize.py")
    current = summarize.TARGET.read_text(encoding="utf-8")
    assert current == summarize.generated(current), f"BENCHMARKS.md is out of date; run `{summarize.COMMAND}`"
    # Nothing is left to copy by hand: every table of BENCHMARKS.md lies in a generated block.
    outside = re.sub(r"<!-- BEGIN GENERATED: .*?<!-- END GENERATED: [a-z_]+ -->", "", current, flags=re.S)
    assert not re.search(r"^\|", outside, flags=re.M), "a table outside the generated blocks of BENCHMARKS.md"


def test_a_stale_block_is_named_with_the_command_to_run(tmp_path: Path) -> None:
    gen_docs = _script("scripts/gen_docs.py")
    begin, end = gen_docs._markers("parameters")
    stale = f"intro\n{begin}\n| old | table |\n{end}\noutro\n"
    fresh = gen_docs.replace_block(stale, "parameters", gen_docs.parameter_table())
    assert fresh.startswith("intro\n") and fresh.endswith(f"{end}\noutro\n") and "| `T_mult` |" in fresh
    with pytest.raises(ValueError, match="no generated block 'parameters'"):
        gen_docs.replace_block("no markers here", "parameters", "")
