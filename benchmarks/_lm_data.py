"""The data of the language-model benchmark (`lm_multi_epoch.py`): contiguous parts of a text file, character
ids and non-overlapping blocks.

The splits: train = the first 90 % of the characters, validation = the next 5 %, test = the last 5 %. The
vocabulary is the characters of the train part (plus one id for characters it lacks); a block predicts its own
next characters.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

#: (split, first, last) as fractions of the file's characters.
SPLITS = (("train", 0.0, 0.9), ("validation", 0.9, 0.95), ("test", 0.95, 1.0))


class CharTokenizer:
    """Character-level ids: the train part's characters, id 0 for a character it lacks."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.ids = {char: i + 1 for i, char in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.ids.get(char, 0) for char in text], dtype=torch.long)


def read_part(path: Path, split: str) -> str:
    """One contiguous part of the file (`SPLITS`); the test part is asked for in the report stage only."""
    text = path.read_text(encoding="utf-8")
    _, lo, hi = next(s for s in SPLITS if s[0] == split)
    return text[int(len(text) * lo) : int(len(text) * hi)]


def blocks(ids: torch.Tensor, block_size: int, limit: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Non-overlapping blocks (the remainder dropped) as causal-LM examples predicting their own tokens."""
    rows = ids[: len(ids) // block_size * block_size].view(-1, block_size)
    if limit:
        rows = rows[:limit]
    return [{"input_ids": row, "attention_mask": torch.ones_like(row), "labels": row} for row in rows]


def block_loader(
    tokenizer: CharTokenizer, text: str, block_size: int, batch_size: int, limit: int | None = None
) -> DataLoader:
    """An evaluation loader of `text`'s first `limit` blocks (all by default)."""
    return DataLoader(blocks(tokenizer.encode(text), block_size, limit), batch_size=batch_size)
