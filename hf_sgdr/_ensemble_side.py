"""The ensemble-side calls that the training glue may make without importing the ensembles (the ensembles, layer 6,
sit above the training glue, layer 5, which never imports `hf_sgdr.snapshots`).

The package's front, `hf_sgdr/__init__.py`, runs before any submodule is imported and sits above both layers: it
fills these slots in with functions that import the ensemble side only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: `hf_sgdr.snapshots.evaluate_trainer_snapshots`, for the deprecated `SGDRTrainer.evaluate_snapshots`.
evaluate_trainer_snapshots: Callable[..., Any]
