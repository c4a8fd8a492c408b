"""The names of things in a snapshot folder, defined once for the side that writes and the side that reads.

snapshots/          # SNAPSHOT_SUBDIR of a training run's output_dir (unless snapshot_dir says otherwise)
  manifest.json     # MANIFEST_NAME
  schedule.png      # PLOT_NAME, optional
  README.md         # CARD_NAME: the model card (a saved or pushed ensemble only, written by the ensemble side)
  cycle-000/        # snapshot_name(0): what AutoModel*.from_pretrained (or PEFT) loads
  cycle-001/ ...
"""

from __future__ import annotations

import re

#: Sub-folder of a training run's `output_dir` that holds its snapshots by default.
SNAPSHOT_SUBDIR = "snapshots"
MANIFEST_NAME = "manifest.json"
#: The lr plot saved beside the manifest (shown by the model card).
PLOT_NAME = "schedule.png"
#: The model card of a saved or pushed ensemble.
CARD_NAME = "README.md"
#: Weights file for a model that is neither a `PreTrainedModel` nor a `PeftModel`.
PLAIN_WEIGHTS_NAME = "model.safetensors"
#: Folder of the snapshot taken at the end of cycle `cycle` (more digits past 999).
SNAPSHOT_NAME = "cycle-{cycle:03d}"
_SNAPSHOT_NAME = re.compile(r"^cycle-\d{3,}$")


def snapshot_name(cycle: int) -> str:
    """`cycle-000`, `cycle-001`, ...: the folder of cycle `cycle`'s snapshot."""
    return SNAPSHOT_NAME.format(cycle=cycle)


def is_snapshot_name(name: str) -> bool:
    """True for a name `snapshot_name` makes (what a run may rotate out or replace in its folder)."""
    return bool(_SNAPSHOT_NAME.match(name))
