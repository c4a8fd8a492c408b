"""Causal-LM ensembles on dynamically padded batches (`DataCollatorForLanguageModeling`: labels of a
different width per batch, padding as -100): `predict` and `evaluate` run, and the perplexity is the
one of the same sequences unpadded."""

from __future__ import annotations

import pytest
import torch
from helpers.ensembles import tiny_lm_folder, tokenizer, wikitext_blocks
from torch.utils.data import DataLoader
from transformers import DataCollatorForLanguageModeling

from hf_sgdr.snapshots import SnapshotEnsemble

#: Sequence lengths: every batch of 4 has another width once padded.
LENGTHS = [9, 14, 20, 12, 31, 25, 18, 7, 11, 16, 28, 13]


def _examples() -> list[dict[str, list[int]]]:
    blocks = wikitext_blocks()[48 : 48 + len(LENGTHS)]
    return [{"input_ids": block[:n].tolist()} for block, n in zip(blocks, LENGTHS, strict=True)]


def _padded_loader() -> DataLoader:
    collator = DataCollatorForLanguageModeling(tokenizer(), mlm=False)
    return DataLoader(_examples(), batch_size=4, collate_fn=collator)


def _unpadded_loader() -> DataLoader:
    """One sequence per batch: nothing to pad."""
    rows = [{"input_ids": torch.tensor(e["input_ids"]), "labels": torch.tensor(e["input_ids"])} for e in _examples()]
    return DataLoader(rows, batch_size=1)


def test_padded_batches_have_different_label_widths() -> None:
    widths = {batch["labels"].shape[1] for batch in _padded_loader()}
    assert widths == {20, 31, 28}
    assert any((batch["labels"] == -100).any() for batch in _padded_loader())


def test_lm_predict_on_padded_batches_equals_the_unpadded_perplexity() -> None:
    ensemble = SnapshotEnsemble.from_pretrained(tiny_lm_folder(), progress=False)
    padded = ensemble.predict(_padded_loader())
    unpadded = ensemble.predict(_unpadded_loader())
    assert padded.member_outputs.shape == (3, sum(LENGTHS) - len(LENGTHS))  # padding predicts nothing
    torch.testing.assert_close(padded.member_outputs, unpadded.member_outputs, rtol=1e-5, atol=1e-5)
    assert padded.perplexity == pytest.approx(unpadded.perplexity, rel=1e-6)
    assert padded.labels.shape == (len(LENGTHS), 31)  # right-padded with -100 to the widest batch
    assert int((padded.labels != -100).sum()) == sum(LENGTHS)


def test_lm_evaluate_on_padded_batches_reports_the_unpadded_perplexity() -> None:
    ensemble = SnapshotEnsemble.from_pretrained(tiny_lm_folder(), progress=False)
    padded = ensemble.evaluate(_padded_loader(), soups=False)
    unpadded = ensemble.evaluate(_unpadded_loader(), soups=False)
    assert [row.name for row in padded.rows] == [row.name for row in unpadded.rows]
    for ours, theirs in zip(padded.rows, unpadded.rows, strict=True):
        assert ours.metrics["perplexity"] == pytest.approx(theirs.metrics["perplexity"], rel=1e-6)
    assert padded.num_eval_items == unpadded.num_eval_items == len(LENGTHS)
