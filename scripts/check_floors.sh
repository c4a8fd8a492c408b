#!/usr/bin/env bash
# Runs the default test suite against the declared lower bounds: a fresh venv outside the tree gets exactly the
# versions in constraints/floors.txt, then `pytest -m "not slow"`. Run it whenever a dependency or a floor changes;
# it writes its result to constraints/floors-last-run.md (commit that file).
#
#   bash scripts/check_floors.sh            # venv in $FLOORS_VENV (default /tmp/hf_sgdr-floors-venv)
#
# torch 2.8 from PyPI is a CUDA build (about 3.8 GB with its nvidia packages); it runs on the CPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLOORS_VENV:-/tmp/hf_sgdr-floors-venv}"
constraints="$root/constraints/floors.txt"
log="$(mktemp)"
start=$(date +%s)

python3 -m venv --clear "$venv"
. "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -c "$constraints" torch
python -m pip install --quiet -c "$constraints" -e "$root[dev]"

cd "$root"
set +e
python -m pytest -m "not slow" -n 2 -q -p no:cacheprovider 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

versions="$(python - <<'PY'
from importlib.metadata import version
names = ["torch", "transformers", "safetensors", "accelerate", "peft", "huggingface_hub", "datasets", "evaluate",
         "matplotlib", "numpy", "scikit-learn", "scipy", "pytest"]
print(", ".join(f"{n} {version(n)}" for n in names))
PY
)"
{
  echo "# Last run of scripts/check_floors.sh"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD), Python $(python -c 'import platform; print(platform.python_version())'), $(nproc) CPU cores"
  echo "- installed: $versions"
  echo "- result (exit status $status, $(( $(date +%s) - start )) s in all): \`$(grep -E '(passed|failed|error)' "$log" | tail -1)\`"
  if [[ $status -ne 0 ]]; then
    echo "- failures:"
    grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/  - /' || true
  fi
} > "$root/constraints/floors-last-run.md"
cat "$root/constraints/floors-last-run.md"
exit "$status"
