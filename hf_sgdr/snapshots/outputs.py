"""Running members over the data: the pipeline once, each member in turn, compact outputs on the CPU.

The dataloader is iterated once (`materialize`): tokenisation and collation are paid once for the whole
ensemble, and the collated batches are replayed for every member. What a member leaves behind is small:
its logits (classification, regression) or, for a causal LM, only the log-probability of each target
token, never the full vocabulary distribution (with `temperatures`: that log-probability at each of them).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm.auto import tqdm

from .runners import Runner
from .tasks import task_kind
from .transfer import to_device

if TYPE_CHECKING:
    from .tasks.base import TaskKind

LABEL_KEYS = ("labels", "label", "label_ids")
IGNORE_INDEX = -100


@dataclass
class Batches:
    """Collated batches kept on the CPU (inputs without labels) and their labels, batch by batch."""

    inputs: list[dict[str, torch.Tensor]]
    labels: list[torch.Tensor | None]

    def __len__(self) -> int:
        return len(self.inputs)

    def example_labels(self) -> torch.Tensor | None:
        """The labels of every example, concatenated (None when the data has none).

        Token labels of dynamically padded batches (a different width per batch, as
        `DataCollatorForLanguageModeling` gives) are right-padded with -100 to the widest batch.
        """
        if not self.labels or any(label is None for label in self.labels):
            return None
        rows = [label.reshape(label.shape[0], -1) for label in self.labels]
        width = max(row.shape[1] for row in rows)
        if any(row.shape[1] != width for row in rows):
            rows = [nn.functional.pad(row, (0, width - row.shape[1]), value=IGNORE_INDEX) for row in rows]
        return torch.cat(rows).squeeze(-1)

    def targets(self, kind: str | TaskKind) -> torch.Tensor | None:
        """The labels the outputs of `kind` are scored against (`TaskKind.targets` of `example_labels`)."""
        return task_kind(kind).targets(self.example_labels())


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch (progress bars only on rank 0)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def materialize(dataloader: Iterable[Mapping[str, torch.Tensor]]) -> Batches:
    """Iterate `dataloader` once and keep its batches (tensors only) on the CPU."""
    if hasattr(dataloader, "column_names"):  # a datasets.Dataset: rows of lists, not collated batches
        raise TypeError(
            f"expected a DataLoader of collated tensor batches, got {type(dataloader).__module__}."
            f"{type(dataloader).__name__}: wrap the dataset as DataLoader(dataset, batch_size=..., "
            "collate_fn=DataCollatorWithPadding(tokenizer)), or pass the dataset to evaluate_trainer_snapshots"
        )
    inputs, labels = [], []
    for batch in dataloader:
        if not isinstance(batch, Mapping) or not any(isinstance(v, torch.Tensor) for v in batch.values()):
            raise TypeError(
                f"expected batches as mappings of tensors (a DataLoader with a collator), got {type(batch).__name__}"
            )
        label = next((batch[key] for key in LABEL_KEYS if key in batch), None)
        inputs.append({k: v.cpu() for k, v in batch.items() if k not in LABEL_KEYS and isinstance(v, torch.Tensor)})
        labels.append(None if label is None else torch.as_tensor(label).cpu())
    if not inputs:
        raise ValueError("the dataloader yielded no batches")
    return Batches(inputs, labels)


def accepted_inputs(module: nn.Module) -> set[str] | None:
    """Keyword arguments the model's forward takes (None: it takes any), to drop columns such as `idx`."""
    target = module.get_base_model() if hasattr(module, "get_base_model") else module
    parameters = inspect.signature(target.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def _logits(output: object) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    return output[0]  # type: ignore[index]


def forward_outputs(
    module: nn.Module,
    batches: Batches,
    kind: TaskKind,
    device: torch.device,
    bar: tqdm,
    temperatures: tuple[float, ...] | None = None,
) -> torch.Tensor:
    """One member's compact outputs over all batches (`TaskKind.batch_outputs`, concatenated on the CPU): logits
    [N, C] of each example or scored token, values [N], or target log-probs [T] ([T, G] at G `temperatures`).

    The outputs stay on the device until the last batch: nothing waits for the device in between, so the host
    queues the next batch's forward while the device runs this one (as K forward passes of one model do).
    """
    keys = accepted_inputs(module)
    outputs = []
    with torch.inference_mode():
        for inputs, labels in zip(batches.inputs, batches.labels, strict=True):
            feed = {k: to_device(v, device) for k, v in inputs.items() if keys is None or k in keys}
            outputs.append(kind.batch_outputs(_logits(module(**feed)), inputs, labels, temperatures))
            bar.update(1)
    return torch.cat(outputs).cpu()


def collect_member_outputs(
    runner: Runner,
    indices: Sequence[int],
    batch_sets: Sequence[Batches],
    kind: TaskKind,
    *,
    progress: bool = True,
    temperatures: tuple[float, ...] | None = None,
) -> list[torch.Tensor]:
    """For each batch set, the members' outputs stacked on dim 0; each member is loaded once for all sets.

    `temperatures` (causal LM only): each target log-probability at every one of them (see `forward_outputs`).
    """
    per_set: list[list[torch.Tensor]] = [[] for _ in batch_sets]
    total = len(indices) * sum(len(b) for b in batch_sets)
    with tqdm(total=total, desc="snapshots", unit="batch", disable=not (progress and is_main_process())) as bar:
        for _ in runner.each(indices):
            for results, batches in zip(per_set, batch_sets, strict=True):
                results.append(forward_outputs(runner.module(), batches, kind, runner.device, bar, temperatures))
    return [torch.stack(results) for results in per_set]


def soup_outputs(
    runner: Runner,
    indices: Sequence[int],
    batch_sets: Sequence[Batches],
    kind: TaskKind,
    weights: Sequence[float] | None,
) -> list[torch.Tensor]:
    """Outputs of the soup of `indices` (one model) on each batch set."""
    module = runner.soup(indices, weights)
    with tqdm(disable=True) as bar:
        return [forward_outputs(module, batches, kind, runner.device, bar) for batches in batch_sets]
