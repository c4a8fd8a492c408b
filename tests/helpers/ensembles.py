"""Shared builders for the ensemble, loading and Hub tests.

Each builder trains a real model briefly with SGDR on real data and writes the snapshot folder the way
the training side does (`write_snapshot_folder` per snapshot, then `SnapshotManifest.save`), independently
of `SnapshotEnsemble.save_pretrained`. Results are cached per test session (module-level cache, so every
test module shares them) and copied when a test needs to damage one.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hf_sgdr import SGDRScheduler
from hf_sgdr.snapshot_format.layout import snapshot_name
from hf_sgdr.snapshot_format.manifest import SnapshotManifest, SnapshotRecord
from hf_sgdr.snapshot_format.storage import write_snapshot_folder

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_LENGTH = 32
_ROOT = Path(tempfile.mkdtemp(prefix="hf_sgdr_ensemble_tests_"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.cache
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_ID)


@functools.cache
def glue(task: str, split: str) -> Any:
    from datasets import load_dataset

    return load_dataset("nyu-mll/glue", task, split=split)


def sst2_loader(split: str, batch_size: int = 16) -> Any:
    """Labelled SST-2 batches (MiniLM tokenizer, max_length 32)."""
    from hf_sgdr.data import text_dataloader

    data = glue("sst2", split)
    return text_dataloader(
        tokenizer(), data["sentence"], labels=data["label"], max_length=MAX_LENGTH, batch_size=batch_size
    )


def rte_loader(split: str, batch_size: int = 16) -> Any:
    """Labelled RTE sentence-pair batches."""
    from hf_sgdr.data import text_dataloader

    data = glue("rte", split)
    return text_dataloader(
        tokenizer(), data["sentence1"], data["sentence2"], data["label"], max_length=64, batch_size=batch_size
    )


@functools.cache
def wikitext_blocks(num_tokens: int = 2048, block_size: int = 32) -> torch.Tensor:
    """Real WikiText-2 validation text tokenised with the MiniLM tokenizer, as [n, block_size] ids."""
    from conftest import DATA

    text = (DATA / "lm" / "wikitext-2-valid.txt").read_text(encoding="utf-8")[: num_tokens * 8]
    ids = tokenizer()(text, add_special_tokens=False)["input_ids"][:num_tokens]
    return torch.tensor(ids[: len(ids) // block_size * block_size]).view(-1, block_size)


def train_with_sgdr(
    model: nn.Module, batches: list[dict[str, torch.Tensor]], num_cycles: int, steps_per_cycle: int, lr: float
) -> tuple[SGDRScheduler, list[tuple[int, dict[str, torch.Tensor]]]]:
    """Train on `batches` (cycled) under SGDR; return the scheduler and (step, CPU weights) at each cycle end."""
    torch.manual_seed(0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    budget = num_cycles * steps_per_cycle
    scheduler = SGDRScheduler(optimizer, num_cycles=num_cycles, num_training_steps=budget)
    ends = set(scheduler.schedule.cycle_ends(budget))
    model.train()
    snapshots = []
    for step in range(budget):
        loss = model(**batches[step % len(batches)]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        if step + 1 in ends:
            snapshots.append((step + 1, {k: v.detach().clone() for k, v in model.state_dict().items()}))
    model.eval()
    return scheduler, snapshots


def write_layout(
    folder: Path,
    model: nn.Module,
    snapshots: list[tuple[int, dict[str, torch.Tensor]]],
    scheduler: SGDRScheduler,
    *,
    snapshot_type: str,
    auto_class: str,
    task: str,
    base_model: str | None = None,
    save: Callable[[nn.Module, Path], None] | None = None,
    strict: bool = True,
) -> Path:
    """The training side's layout: one checksummed folder per snapshot, the tokenizer, then manifest.json."""
    records = []
    for cycle, (step, state) in enumerate(snapshots):
        model.load_state_dict(state, strict=strict)
        name = snapshot_name(cycle)
        files = write_snapshot_folder(folder / name, functools.partial(save or _save_pretrained, model))
        records.append(
            SnapshotRecord(
                name,
                cycle,
                step,
                step,
                lr=scheduler.schedule.lrs(step - 1, [1e-3]),
                train_loss=1.0 / (cycle + 1),
                eval_metrics={"accuracy": 0.5 + 0.1 * cycle},
                files=files,
            )
        )
    tokenizer().save_pretrained(folder)
    SnapshotManifest(
        snapshot_type=snapshot_type,
        auto_class=auto_class,
        base_model=base_model,
        task=task,
        schedule=scheduler.schedule.to_dict(),
        training={"learning_rate": 1e-3},
        snapshots=records,
    ).save(folder)
    return folder


def _save_pretrained(model: nn.Module, folder: Path) -> None:
    model.save_pretrained(folder)


def _classification_batches(split: str, count: int, batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
    return [dict(batch) for _, batch in zip(range(count), sst2_loader(split, batch_size), strict=False)]


@functools.cache
def minilm_folder() -> Path:
    """Three MiniLM snapshots (3 SGDR cycles x 2 steps on SST-2 train), full models.

    The embeddings and the first four layers are frozen to keep the run short on two CPU cores.
    """
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)
    for module in [model.bert.embeddings, *model.bert.encoder.layer[:4]]:
        module.requires_grad_(False)
    scheduler, snapshots = train_with_sgdr(model, _classification_batches("train[:48]", 6), 3, 2, 1e-3)
    return write_layout(
        _ROOT / "minilm",
        model,
        snapshots,
        scheduler,
        snapshot_type="full_model",
        auto_class="AutoModelForSequenceClassification",
        task="sst2",
        base_model=MODEL_ID,
    )


def tiny_bert(num_labels: int = 2, head: str = "BertForSequenceClassification") -> nn.Module:
    """A small randomly initialised BERT (hidden 32, 2 layers) over the MiniLM vocabulary with the `head` class."""
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=tokenizer().vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    return getattr(transformers, head)(config)


@functools.cache
def tiny_bert_folder() -> Path:
    """Four snapshots of a small randomly initialised BERT (hidden 32) trained on SST-2 with SGDR."""
    model = tiny_bert()
    scheduler, snapshots = train_with_sgdr(model, _classification_batches("train[:96]", 12), 4, 3, 3e-3)
    return write_layout(
        _ROOT / "tiny_bert",
        model,
        snapshots,
        scheduler,
        snapshot_type="full_model",
        auto_class="AutoModelForSequenceClassification",
        task="sst2",
    )


TOKEN_KINDS = ("word", "piece", "punctuation")


def _token_kind(token: str) -> int:
    return 1 if token.startswith("##") else 0 if token.isalnum() else 2


def token_batches(split: str, batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Real SST-2 sentences, every token labelled with its kind (`TOKEN_KINDS`: word start, '##' word piece,
    punctuation) and -100 on the special tokens and the padding, as token-classification data is."""
    data = glue("sst2", split)
    encoded = tokenizer()(
        list(data["sentence"]),
        truncation=True,
        max_length=MAX_LENGTH,
        padding="max_length",
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    labels = torch.tensor(
        [[_token_kind(t) for t in tokenizer().convert_ids_to_tokens(row)] for row in encoded["input_ids"]]
    )
    labels[encoded.pop("special_tokens_mask").bool()] = -100
    encoded["labels"] = labels
    return [{k: v[i : i + batch_size] for k, v in encoded.items()} for i in range(0, len(labels), batch_size)]


def choice_batches(split: str, batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Real SST-2 sentences as two-way multiple choice: (sentence, "negative") or (sentence, "positive"), the
    label the right choice; inputs [batch, 2, tokens]."""
    data = glue("sst2", split)
    sentences = [s for s in data["sentence"] for _ in range(2)]
    encoded = tokenizer()(
        sentences,
        ["negative", "positive"] * len(data),
        truncation=True,
        max_length=MAX_LENGTH,
        padding="max_length",
        return_tensors="pt",
    )
    inputs = {k: v.view(len(data), 2, -1) for k, v in encoded.items()}
    inputs["labels"] = torch.tensor(list(data["label"]))
    return [{k: v[i : i + batch_size] for k, v in inputs.items()} for i in range(0, len(data), batch_size)]


@functools.cache
def tiny_token_folder() -> Path:
    """Three snapshots of a small BERT token classifier (the token kinds of SST-2 sentences) trained with SGDR."""
    model = tiny_bert(len(TOKEN_KINDS), "BertForTokenClassification")
    scheduler, snapshots = train_with_sgdr(model, token_batches("train[:64]"), 3, 3, 3e-3)
    return write_layout(
        _ROOT / "tiny_token",
        model,
        snapshots,
        scheduler,
        snapshot_type="full_model",
        auto_class="AutoModelForTokenClassification",
        task="token-kinds",
    )


@functools.cache
def minilm_choice_folder() -> Path:
    """Three MiniLM multiple-choice snapshots (SST-2 as a choice of label words; 3 SGDR cycles x 2 steps), the
    embeddings and first four layers frozen. A randomly initialised BERT scores both choices alike here: the
    difference of one word reaches its pooled output only after far more steps."""
    from transformers import AutoModelForMultipleChoice

    model = AutoModelForMultipleChoice.from_pretrained(MODEL_ID)
    for module in [model.bert.embeddings, *model.bert.encoder.layer[:4]]:
        module.requires_grad_(False)
    scheduler, snapshots = train_with_sgdr(model, choice_batches("train[:48]"), 3, 2, 1e-3)
    return write_layout(
        _ROOT / "minilm_choice",
        model,
        snapshots,
        scheduler,
        snapshot_type="full_model",
        auto_class="AutoModelForMultipleChoice",
        task="sst2-choice",
    )


def tiny_gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    vocab = tokenizer().vocab_size
    config = GPT2Config(
        vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config)


@functools.cache
def tiny_lm_folder() -> Path:
    """Three snapshots of a tiny GPT-2 (tied embeddings) trained on WikiText-2 with SGDR."""
    model = tiny_gpt2()
    blocks = wikitext_blocks()
    batches = [{"input_ids": blocks[i : i + 8], "labels": blocks[i : i + 8]} for i in range(0, 48, 8)]
    scheduler, snapshots = train_with_sgdr(model, batches, 3, 4, 3e-3)
    return write_layout(
        _ROOT / "tiny_lm",
        model,
        snapshots,
        scheduler,
        snapshot_type="full_model",
        auto_class="AutoModelForCausalLM",
        task="wikitext-2",
    )


def lora_model() -> nn.Module:
    """MiniLM for SST-2 with a fresh LoRA (r=4 on query/value of the last two layers) and its own classifier head."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"], layers_to_transform=[4, 5]
    )
    torch.manual_seed(0)
    return get_peft_model(base, config)


@functools.cache
def lora_folder() -> Path:
    """Three LoRA snapshots of MiniLM (3 SGDR cycles x 2 steps on SST-2 train): adapters only."""
    model = lora_model()
    scheduler, snapshots = train_with_sgdr(model, _classification_batches("train[:48]", 6), 3, 2, 1e-2)
    adapter_only = [
        (step, {k: v for k, v in state.items() if "lora_" in k or "modules_to_save" in k}) for step, state in snapshots
    ]

    return write_layout(
        _ROOT / "lora",
        model,
        adapter_only,
        scheduler,
        snapshot_type="peft_adapter",
        auto_class="AutoModelForSequenceClassification",
        task="sst2",
        base_model=MODEL_ID,
        strict=False,
    )


def copy_folder(source: Path, target: Path) -> Path:
    """A private copy of a cached snapshot folder, for tests that damage it."""
    shutil.copytree(source, target)
    return target
