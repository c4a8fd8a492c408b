"""The data of the GLUE benchmark (`glue_multi_epoch.py`): the train subset, the validation loader and the
holdout, which is read once, in the final-report stage only.

SST-2 validates on its validation split; RTE, which has no labelled test split here, validates on a fixed part
of its train split, and its official validation split is the holdout.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from _common import DATA

logger = logging.getLogger("benchmarks.glue")

#: Per task: its text column(s).
COLUMNS = {"sst2": ("sentence",), "rte": ("sentence1", "sentence2")}


def sorted_loader(
    tokenizer: Any,
    texts: list[str],
    labels: list[int],
    max_length: int,
    batch_size: int,
    text_pairs: list[str] | None = None,
) -> Any:
    """An evaluation dataloader with the examples (or sentence pairs) sorted by length (less padding; metrics
    are order-free)."""
    from hf_sgdr.data import text_dataloader

    encoded = tokenizer(texts, text_pairs, truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    return text_dataloader(
        tokenizer,
        [texts[i] for i in order],
        None if text_pairs is None else [text_pairs[i] for i in order],
        labels=[labels[i] for i in order],
        max_length=max_length,
        batch_size=batch_size,
    )


def frame_loader(task: str, tokenizer: Any, frame: Any, max_length: int, batch_size: int) -> Any:
    """A length-sorted evaluation loader of a frame with the task's text column(s) and `label`."""
    columns = COLUMNS[task]
    pairs = frame[columns[1]].tolist() if len(columns) > 1 else None
    return sorted_loader(tokenizer, frame[columns[0]].tolist(), frame["label"].tolist(), max_length, batch_size, pairs)


def split_train(frame: Any, validation_samples: int, train_samples: int) -> tuple[Any, Any]:
    """A train split shuffled once (seed 0, whatever the run's seed): its first `validation_samples` rows as the
    validation split, the next `train_samples` rows as the train subset (disjoint)."""
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    if validation_samples + train_samples > len(frame):
        raise SystemExit(
            f"{validation_samples} validation + {train_samples} train rows asked; the train split has {len(frame)}"
        )
    return frame.iloc[:validation_samples], frame.iloc[validation_samples : validation_samples + train_samples]


def train_and_validation(args: Any, tokenizer: Any) -> tuple[Any, Any]:
    """The tokenised train subset (a `Trainer` dataset) and the validation loader: SST-2's (its validation split,
    the train subset a fixed shuffle of its train split, through the Hub ids, offline), or RTE's: RTE train
    shuffled once (seed 0), its first `validation_samples` pairs as validation, the train subset next."""
    import datasets

    if args.task == "sst2":
        glue = datasets.load_dataset("nyu-mll/glue", "sst2")
        train = glue["train"].shuffle(seed=0).select(range(args.train_samples))
        validation = glue["validation"]
        if args.validation_samples:
            validation = validation.select(range(args.validation_samples))
        validation = validation.to_pandas()
    else:
        import pandas as pd

        validation, subset = split_train(
            pd.read_parquet(DATA / "glue" / args.task / "train.parquet"), args.validation_samples, args.train_samples
        )
        train = datasets.Dataset.from_pandas(subset[[*COLUMNS[args.task], "label"]], preserve_index=False)
    columns = COLUMNS[args.task]
    train = train.map(
        lambda b: tokenizer(*(b[c] for c in columns), truncation=True, max_length=args.max_length),
        batched=True,
        remove_columns=[name for name in train.column_names if name != "label"],
    )
    return train, frame_loader(args.task, tokenizer, validation, args.max_length, args.eval_batch_size)


class Holdout:
    """The labelled holdout, readable once and only in the final-report stage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read_at: float | None = None
        self.stage: str | None = None

    def read(self, stage: str, training_finished_at: float | None) -> Any:
        if stage != "final_report" or training_finished_at is None:
            raise RuntimeError("the holdout is read only in the final-report stage, after every training run")
        import pandas as pd

        self.read_at, self.stage = time.time(), stage
        logger.info("final report: reading the holdout %s", self.path)
        return pd.read_parquet(self.path)
