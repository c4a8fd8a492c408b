"""The core install (torch, transformers, safetensors) is enough for the schedule and for the ensemble side.

`accelerate`, `peft` and `matplotlib` are extras (`train`, `peft`, `plot`): a user who only evaluates snapshots
downloaded from the Hub may have none of them. The child process below makes all three unimportable
(`sys.modules[name] = None`, which is what Python does for a package that is not installed) and then loads,
evaluates, soups, predicts and saves a real ensemble.
"""

from __future__ import annotations

import json
import subprocess
import sys

from helpers.ensembles import tiny_bert_folder

_CHILD = r"""
import json, sys
sys.modules["accelerate"] = None
sys.modules["peft"] = None
sys.modules["matplotlib"] = None
import tempfile
from pathlib import Path

import torch
from transformers import get_scheduler

import hf_sgdr
from hf_sgdr.snapshots import SnapshotEnsemble

optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
scheduler = get_scheduler("sgdr", optimizer, num_warmup_steps=0, num_training_steps=8,
                          scheduler_specific_kwargs={"T_0": 4})
lrs = []
for _ in range(8):
    lrs.append(scheduler.get_last_lr()[0]); optimizer.step(); scheduler.step()

ensemble = SnapshotEnsemble.from_pretrained(sys.argv[1], progress=False)
torch.manual_seed(0)
batches = [{"input_ids": torch.randint(5, 100, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long),
            "labels": torch.tensor([0, 1, 0, 1])} for _ in range(2)]
report = ensemble.evaluate(batches, soups=True)
prediction = ensemble.predict(batches)
with tempfile.TemporaryDirectory() as saved:
    ensemble.save_pretrained(saved)
    saved_names = sorted(p.name for p in Path(saved).iterdir())
print(json.dumps({
    "saved": saved_names,
    "accelerate_loaded": "accelerate" in sys.modules and sys.modules["accelerate"] is not None,
    "lrs": lrs,
    "rows": [row.name for row in report.rows],
    "members": len(ensemble.snapshot_names),
    "prediction_shape": list(prediction.probabilities.shape),
}))
"""


def test_schedule_and_ensemble_work_without_accelerate_peft_and_matplotlib() -> None:
    folder = tiny_bert_folder()
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["accelerate_loaded"] is False
    assert out["lrs"][0] == 0.1 and out["lrs"][4] == 0.1  # a restart at step 4
    assert out["members"] == 4
    assert any("soup" in name for name in out["rows"])
    assert out["prediction_shape"] == [8, 2]
    # Saved with its card; without matplotlib the card has no schedule plot (a warning says so).
    assert "README.md" in out["saved"] and "manifest.json" in out["saved"] and "schedule.png" not in out["saved"]
    assert "matplotlib is not installed" in result.stderr
