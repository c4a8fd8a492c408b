"""Dataset helpers, one rule for the recipes and the `hf-sgdr` command: text columns, local data files,
causal-LM blocks, and dataloaders that tokenise once and pad per batch.

`recipes/glue.py` and `recipes/gpt2_pretrain.py` build their training and evaluation data with these, and
`hf-sgdr evaluate` rebuilds the same from a run's manifest, so that a snapshot evaluated from the shell
sees what the recipe saw. Any dataloader that yields dicts of tensors (with `labels` for evaluation)
works with `SnapshotEnsemble` too.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch.utils.data import DataLoader

from .missing_resources import explain_missing

__all__ = [
    "DATA_FILE_FORMATS",
    "DATA_LAYOUTS",
    "GLUE_TEXT_COLUMNS",
    "TEXT_COLUMN_CANDIDATES",
    "dataset_dataloader",
    "dataset_reference",
    "lm_blocks",
    "lm_blocks_of_rows",
    "lm_dataloader",
    "lm_text_column",
    "load_data_files",
    "load_split",
    "text_columns_for",
    "text_dataloader",
]

#: How `dataset_dataloader` makes batches of a split: texts (and pairs) with labels, or causal-LM blocks of its
#: text column. A task kind names its layout (`snapshots.tasks.registry.KindFacts.data`).
DataLayout = Literal["text", "lm blocks"]
DATA_LAYOUTS: tuple[str, ...] = get_args(DataLayout)
#: The task kinds' names that `dataset_dataloader` took before it took a layout (deprecated, removed in 0.3).
_DEPRECATED_KIND_LAYOUTS = {"classification": "text", "regression": "text", "causal_lm": "lm blocks"}

#: Text columns of the GLUE tasks (second one for sentence pairs).
GLUE_TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}
#: Without a GLUE task or explicit columns, the first of these that a dataset has all of (pairs first).
TEXT_COLUMN_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("sentence",),
    ("text",),
)
#: Local data files `load_data_files` reads, by suffix: (the `datasets` builder, its options).
DATA_FILE_FORMATS: dict[str, tuple[str, dict[str, str]]] = {
    ".txt": ("text", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}


def text_columns_for(
    column_names: Sequence[str], *, text_columns: Sequence[str] | None = None, task: str | None = None
) -> tuple[str, ...]:
    """The text column(s) of a dataset (a second one for sentence pairs): `text_columns` when given, else
    the GLUE task's, else the first of `TEXT_COLUMN_CANDIDATES` the dataset has. Raises `ValueError`
    naming the columns when they are not all there."""
    if text_columns:
        missing = [c for c in text_columns if c not in column_names]
        if missing:
            raise ValueError(f"text columns {missing} are not columns of the dataset: {list(column_names)}")
        return tuple(text_columns)
    task_columns = GLUE_TEXT_COLUMNS.get((task or "").lower())
    candidates = (task_columns,) if task_columns else TEXT_COLUMN_CANDIDATES
    for columns in candidates:
        if set(columns) <= set(column_names):
            return columns
    wanted = " or ".join(str(list(c)) for c in candidates)
    raise ValueError(f"no text columns {wanted} among the dataset's columns {list(column_names)}; pass --text_columns")


def lm_blocks(tokenizer: Any, texts: Sequence[str], block_size: int) -> list[list[int]]:
    """Token blocks for causal-LM training and evaluation: the non-blank texts tokenised, each followed by
    the end-of-text token (when the tokenizer has one), concatenated and cut into blocks of `block_size`.
    The remainder is dropped, unless there is less than one block: then the whole makes one shorter block."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    eos = getattr(tokenizer, "eos_token_id", None)
    ids: list[int] = []
    for encoded in tokenizer([t for t in texts if t.strip()], add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        if eos is not None:
            ids.append(eos)
    if not ids:
        raise ValueError("texts produced no tokens")
    size = min(block_size, len(ids))
    return [ids[i : i + size] for i in range(0, len(ids) // size * size, size)]


def lm_text_column(column_names: Sequence[str], text_columns: Sequence[str] | None = None) -> str:
    """The column a language model's blocks are cut from: the first of `text_columns` when given, else `text`
    where the dataset has one (as the recipes read it), else the first `text_columns_for` finds."""
    if not text_columns and "text" in column_names:
        return "text"
    return text_columns_for(column_names, text_columns=text_columns)[0]


def lm_blocks_of_rows(tokenizer: Any, texts: Sequence[str], rows: range, block_size: int) -> range:
    """The numbers of the `lm_blocks(tokenizer, texts, block_size)` holding tokens of `texts[rows]` (empty for blank
    rows): whether a slice of rows shares text with numbered blocks. Only the texts before `rows.stop` are
    tokenised; numbers past the last whole block may come out (that text is in no block)."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    eos = getattr(tokenizer, "eos_token_id", None)
    texts = list(texts)[: rows.stop]
    written = [i for i, text in enumerate(texts) if text.strip()]
    lengths = [0] * len(texts)
    if written:
        encoded = tokenizer([texts[i] for i in written], add_special_tokens=False)["input_ids"]
        for i, ids in zip(written, encoded, strict=True):
            lengths[i] = len(ids) + (eos is not None)
    start = sum(lengths[: rows.start])
    end = start + sum(lengths[rows.start :])
    return range(start // block_size, (end - 1) // block_size + 1) if end > start else range(0)


def text_dataloader(
    tokenizer: Any,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    labels: Sequence[int | float] | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 32,
) -> DataLoader:
    """Tokenise `texts` (and `text_pairs`) once; batches are padded to their longest member."""
    from transformers import DataCollatorWithPadding

    if text_pairs is not None and len(text_pairs) != len(texts):
        raise ValueError(f"text_pairs must have one entry per text ({len(texts)}); got {len(text_pairs)}")
    if labels is not None and len(labels) != len(texts):
        raise ValueError(f"labels must have one entry per text ({len(texts)}); got {len(labels)}")
    encoded = tokenizer(
        list(texts), None if text_pairs is None else list(text_pairs), truncation=True, max_length=max_length
    )
    features = [{key: values[i] for key, values in encoded.items()} for i in range(len(texts))]
    if labels is not None:
        for feature, label in zip(features, labels, strict=True):
            feature["labels"] = label
    return DataLoader(features, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer))


def lm_dataloader(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    block_size: int = 128,
    batch_size: int = 8,
    max_blocks: int | None = None,
    blocks: Sequence[int] | None = None,
) -> DataLoader:
    """The `lm_blocks` of `texts` (the first `max_blocks` of them, and of those the ones numbered in `blocks`, when
    given), batched; each block predicts its own tokens."""
    cut = lm_blocks(tokenizer, texts, block_size)[:max_blocks]
    if blocks is not None:
        outside = next((number for number in blocks if not 0 <= number < len(cut)), None)
        if outside is not None:
            raise ValueError(f"blocks must be block numbers in [0, {len(cut)}); got {outside}")
        cut = [cut[number] for number in blocks]
    tensors = torch.tensor(cut)
    features = [{"input_ids": block, "attention_mask": torch.ones_like(block), "labels": block} for block in tensors]
    return DataLoader(features, batch_size=batch_size)


def load_data_files(files: Mapping[str, str]) -> Any:
    """A `datasets.DatasetDict` with one split per entry of `files` (split name -> local file), all of one
    format: .txt, .csv, .tsv, .json(l) or .parquet."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetsError
    from pyarrow.lib import ArrowException

    suffixes = {os.path.splitext(path)[1].lower() for path in files.values()}
    if len(suffixes) != 1 or not suffixes <= DATA_FILE_FORMATS.keys():
        raise ValueError(
            f"data files must share one format among {', '.join(DATA_FILE_FORMATS)}; got {sorted(files.values())}"
        )
    suffix = suffixes.pop()
    builder, options = DATA_FILE_FORMATS[suffix]
    try:
        return load_dataset(builder, data_files=dict(files), **options)
    except (DatasetsError, ArrowException, UnicodeDecodeError) as error:
        cause = error.__cause__ or error
        detail = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        raise ValueError(
            f"{', '.join(sorted(files.values()))} cannot be read as {suffix} data ({type(cause).__name__}: {detail}); "
            f"give a UTF-8 {suffix} file"
        ) from None


def dataset_reference(name: str) -> str:
    """A `--dataset_name` as a run's manifest records it and a command compares it: a local dataset folder as its
    absolute path (the command may run elsewhere), any other name as given. A name of one of `datasets`' packaged
    builders (`text`, `csv`, ...) is the builder even where a folder has that name, as `load_dataset` reads it."""
    from datasets import packaged_modules

    local = Path(name)
    packaged = getattr(packaged_modules, "_PACKAGED_DATASETS_MODULES", {})
    return str(local.resolve()) if local.is_dir() and name not in packaged else name


def load_split(
    split: str, *, dataset_name: str | None = None, config_name: str | None = None, data_file: str | None = None
) -> Any:
    """A `datasets` split from the Hub (or the offline cache) or from a local file (see `load_data_files`);
    a dataset that cannot be found raises `ResourceNotFoundError` with a one-line message."""
    from datasets import load_dataset

    if data_file is not None:
        return load_data_files({"data": data_file})["data"]
    if dataset_name is None:
        raise ValueError("load_split needs a dataset name (dataset_name) or a local file (data_file)")
    with explain_missing(f"dataset {dataset_name!r}" + (f" (config {config_name!r})" if config_name else "")):
        return load_dataset(dataset_name, config_name, split=split)


def dataset_dataloader(
    dataset: Any,
    tokenizer: Any,
    layout: DataLayout,
    *,
    text_columns: Sequence[str] | None = None,
    label_column: str = "label",
    task: str | None = None,
    max_length: int = 128,
    block_size: int = 128,
    batch_size: int = 32,
    num_labels: int | None = None,
    label_flag: str = "label column",
    max_blocks: int | None = None,
    blocks: Sequence[int] | None = None,
) -> DataLoader:
    """The dataloader for a `datasets` split by `layout` (`DATA_LAYOUTS`): ``"text"``, texts (and pairs, columns by
    `text_columns_for`) with labels; ``"lm blocks"``, the `lm_blocks` of its text column (the first `max_blocks`,
    and of those the ones numbered in `blocks`, when given). With `num_labels`
    (classification), every label must be an integer class in [0, num_labels): else a `ValueError` naming
    `label_flag` and the values, before any work."""
    if layout in _DEPRECATED_KIND_LAYOUTS:
        warnings.warn(
            f"dataset_dataloader's third argument is a data layout: the task kind {layout!r} is deprecated and "
            f"will be refused from hf_sgdr 0.3; pass {_DEPRECATED_KIND_LAYOUTS[layout]!r}",
            FutureWarning,
            stacklevel=2,
        )
        layout = _DEPRECATED_KIND_LAYOUTS[layout]
    if layout not in DATA_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, DATA_LAYOUTS))}; got {layout!r}")
    if layout == "lm blocks":
        return lm_dataloader(
            tokenizer,
            dataset[lm_text_column(dataset.column_names, text_columns)],
            block_size=block_size,
            batch_size=batch_size,
            max_blocks=max_blocks,
            blocks=blocks,
        )
    columns = text_columns_for(dataset.column_names, text_columns=text_columns, task=task)
    if label_column not in dataset.column_names:
        raise ValueError(f"label column {label_column!r} not in the dataset's columns {dataset.column_names}")
    if num_labels is not None:
        check_labels(dataset[label_column], num_labels, label_flag)
    pairs = dataset[columns[1]] if len(columns) > 1 else None
    return text_dataloader(
        tokenizer, dataset[columns[0]], pairs, dataset[label_column], max_length=max_length, batch_size=batch_size
    )


def check_labels(labels: Sequence[Any], num_labels: int, what: str = "labels") -> None:
    """Refuse labels that are not integer classes in [0, num_labels), naming `what`, a few values and the range."""
    bad = [x for x in labels if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < num_labels]
    if bad:
        shown = ", ".join(repr(x) for x in sorted(set(bad), key=repr)[:5])
        raise ValueError(
            f"{what} holds {len(bad)} label(s) outside the model's classes ({shown}): labels must be integers in "
            f"[0, {num_labels - 1}] for a model with {num_labels} labels"
        )
