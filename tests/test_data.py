"""`hf_sgdr.data`: the one rule for text columns and causal-LM blocks that the recipes and `hf-sgdr
evaluate` share."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from hf_sgdr.data import (
    DATA_LAYOUTS,
    dataset_dataloader,
    dataset_reference,
    lm_blocks,
    lm_blocks_of_rows,
    lm_dataloader,
    lm_text_column,
    text_columns_for,
)
from hf_sgdr.snapshots.tasks.registry import LM_BLOCKS, TEXT_DATA, kind_facts, kind_names


class _CharTokenizer:
    """One token per character; `eos_token_id` as a GPT-2 tokenizer has it (None as a BERT one)."""

    def __init__(self, eos_token_id: int | None = 0) -> None:
        self.eos_token_id = eos_token_id

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, list[list[int]]]:
        return {"input_ids": [[ord(c) for c in text] for text in texts]}


def test_text_columns_given_then_the_glue_task_then_the_first_candidate() -> None:
    columns = ["sentence1", "sentence2", "sentence", "label"]
    assert text_columns_for(columns, text_columns=["sentence"]) == ("sentence",)
    assert text_columns_for(["question", "sentence", "label"], task="QNLI") == ("question", "sentence")
    assert text_columns_for(columns) == ("sentence1", "sentence2")  # pairs before single columns
    assert text_columns_for(["text", "label"], task="causal_lm") == ("text",)
    with pytest.raises(ValueError, match=r"text columns \['body'\] are not columns of the dataset"):
        text_columns_for(columns, text_columns=["body"])
    with pytest.raises(ValueError, match=r"no text columns \['sentence'\] among .*\['text', 'label'\]"):
        text_columns_for(["text", "label"], task="sst2")
    with pytest.raises(ValueError, match="pass --text_columns"):
        text_columns_for(["body", "label"])


def test_lm_blocks_separate_texts_by_the_end_token_and_drop_the_remainder() -> None:
    tokenizer = _CharTokenizer(eos_token_id=0)
    assert lm_blocks(tokenizer, ["ab", "  ", "cde"], 3) == [[97, 98, 0], [99, 100, 101]]  # the blank text is left out
    assert lm_blocks(_CharTokenizer(None), ["ab", "cde"], 2) == [[97, 98], [99, 100]]  # no end token to add
    assert lm_blocks(tokenizer, ["ab"], 8) == [[97, 98, 0]]  # less than one block: one shorter block
    with pytest.raises(ValueError, match="texts produced no tokens"):
        lm_blocks(tokenizer, ["", " "], 8)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        lm_blocks(tokenizer, ["ab"], 0)


def test_the_dataloaders_follow_the_same_rules() -> None:
    tokenizer = _CharTokenizer()
    texts = ["to be", "", "or not"]
    (batch,) = lm_dataloader(tokenizer, texts, block_size=4, batch_size=8)
    assert torch.equal(batch["input_ids"], torch.tensor(lm_blocks(tokenizer, texts, 4)))
    assert torch.equal(batch["labels"], batch["input_ids"]) and bool(batch["attention_mask"].all())
    (from_dataset,) = dataset_dataloader(Dataset.from_dict({"text": texts}), tokenizer, "lm blocks", block_size=4)
    assert torch.equal(from_dataset["input_ids"], batch["input_ids"])
    with pytest.warns(FutureWarning, match="the task kind 'causal_lm' is deprecated .* pass 'lm blocks'"):
        (by_kind,) = dataset_dataloader(Dataset.from_dict({"text": texts}), tokenizer, "causal_lm", block_size=4)
    assert torch.equal(by_kind["input_ids"], batch["input_ids"])
    with pytest.raises(ValueError, match="layout must be one of 'text', 'lm blocks'; got 'token_classification'"):
        dataset_dataloader(Dataset.from_dict({"text": texts}), tokenizer, "token_classification")


@pytest.mark.parametrize("eos", [0, None])
def test_the_blocks_of_rows_hold_exactly_those_rows_tokens(eos: int | None) -> None:
    """Every block numbered for a slice of rows holds some of their tokens (a row's end token is its own), and the
    blocks before and after hold none: checked against `lm_blocks` itself, each row's characters told apart."""
    texts = ["abc", "", "defgh", "  ", "ij", "klmnopq", "r", "stu"]
    tokenizer = _CharTokenizer(eos)
    row_of = {ord(c): row for row, text in enumerate(texts) for c in text}
    for block_size in (1, 2, 3, 5):
        blocks = lm_blocks(tokenizer, texts, block_size)
        owners, last = [], None  # the row of each token of each block
        for block in blocks:
            last_rows = []
            for token in block:
                last = last if token == eos else row_of[token]
                last_rows.append(last)
            owners.append(last_rows)
        for start in range(len(texts)):
            for stop in range(start, len(texts) + 1):
                rows = range(start, stop)
                numbered = lm_blocks_of_rows(tokenizer, texts, rows, block_size)
                holding = {i for i, block_rows in enumerate(owners) if any(r in rows for r in block_rows)}
                assert {b for b in numbered if b < len(blocks)} == holding, (block_size, rows)
    assert lm_blocks_of_rows(tokenizer, texts, range(1, 2), 2) == range(0)  # a blank row is in no block
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        lm_blocks_of_rows(tokenizer, texts, range(2), 0)


def test_a_language_model_reads_the_text_column_first() -> None:
    assert lm_text_column(["title", "text"]) == "text"
    assert lm_text_column(["title", "text"], ["title"]) == "title"
    assert lm_text_column(["sentence", "label"]) == "sentence"


def test_lm_blocks_read_the_text_column_and_select_numbered_blocks(tmp_path) -> None:
    """A language model's blocks come from `text` before any other candidate (the recipes read `text`); `max_blocks`
    cuts, `blocks` picks by number in the given order, and a number outside is named."""
    tokenizer = _CharTokenizer()
    data = Dataset.from_dict({"sentence": ["zzzz", "zzzz"], "text": ["abcd", "efgh"]})
    (batch,) = dataset_dataloader(data, tokenizer, "lm blocks", block_size=2, max_blocks=3, blocks=[2, 0])
    assert batch["input_ids"].tolist() == [[0, 101], [97, 98]]  # blocks 2 and 0 of "abcd<eos>efgh<eos>"
    with pytest.raises(ValueError, match=r"blocks must be block numbers in \[0, 3\); got -1"):
        lm_dataloader(tokenizer, ["abcd", "efgh"], block_size=2, max_blocks=3, blocks=[1, -1, 7])
    assert dataset_reference("text") == "text"  # a packaged builder's name, even with a folder of that name here
    (tmp_path / "corpus").mkdir()
    assert dataset_reference(str(tmp_path / "corpus" / ".." / "corpus")) == str((tmp_path / "corpus").resolve())
    assert dataset_reference("Salesforce/wikitext") == "Salesforce/wikitext"


def test_the_task_kinds_name_the_data_layouts() -> None:
    """The torch-free registry writes the layouts out; they are `dataset_dataloader`'s."""
    assert {kind_facts(name).data for name in kind_names()} - {None} == set(DATA_LAYOUTS) == {TEXT_DATA, LM_BLOCKS}
