"""A real `evaluate` metric script written to a local folder, so that `evaluate.load(folder)` needs no Hub."""

from __future__ import annotations

import textwrap
from pathlib import Path

METRIC_NAME = "exact_match_rate"
_SCRIPT = '''
import datasets
import evaluate
import numpy as np


class ExactMatchRate(evaluate.Metric):
    """Accuracy, written here so that nothing is fetched from the Hub."""

    def _info(self):
        return evaluate.MetricInfo(
            description="fraction of predictions equal to the references",
            citation="",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references))), "note": "local"}
'''


def write_metric_script(parent: Path) -> Path:
    """`parent/exact_match_rate/exact_match_rate.py`: an accuracy metric that also returns a text value; returns
    the folder to give `evaluate.load` (or `recipes/glue.py --evaluate_metric`)."""
    folder = parent / METRIC_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{METRIC_NAME}.py").write_text(textwrap.dedent(_SCRIPT), encoding="utf-8")
    return folder
