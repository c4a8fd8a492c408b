"""Pretrain a GPT-2 causal LM from scratch with SGDR, snapshot every cycle, and measure the perplexity
of every snapshot, of the snapshot ensemble (token probabilities averaged) and of the weight soup.

    accelerate launch recipes/gpt2_pretrain.py --train_file ../shared/data/lm/tinyshakespeare.txt \\
        --model_size cpu-tiny --block_size 128 --output_dir out/gpt2 --num_cycles 4 --max_train_steps 600

Data: a Hub dataset (`--dataset_name/--dataset_config_name`) or text files (`--train_file`,
`--validation_file`; without a validation file the last `--validation_split_percentage` % of the
training text is held out). Tokenizer: `--tokenizer_name`, or a byte-level BPE trained on the training
text (offline) and saved with the snapshots. Model: `--config_name` (e.g. gpt2) or the size flags
(`--model_size` presets, `--n_layer/--n_head/--n_embd`). The blocks are cut by `hf_sgdr.data.lm_blocks`,
as `hf-sgdr evaluate` cuts them. The schedule, checkpoint, tracking and push flags, and the training loop,
are those of `recipes/glue.py` (the flags shared in `common.py`).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from datasets import Dataset, DatasetDict, load_dataset
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Budget,
    TrainingLog,
    apply_lora,
    evaluate_snapshots,
    finish,
    gather_for_metrics,
    make_accelerator,
    make_optimizer,
    parse_arguments,
    run_recipe,
)
from hf_sgdr import SGDRAccelerateHelper, SGDRScheduler, loading
from hf_sgdr.data import dataset_reference, lm_blocks
from hf_sgdr.snapshots import TRAIN_BLOCKS_KEY, TrainData
from hf_sgdr.training import ResumePoint, epoch_batches, find_checkpoint, save_checkpoint

#: (n_layer, n_head, n_embd) presets; "cpu-tiny" trains on 2 CPU cores in minutes.
MODEL_SIZES = {"cpu-tiny": (2, 2, 64), "cpu-small": (4, 4, 128), "gpt2": (12, 12, 768)}
EOS = "<|endoftext|>"


@dataclass
class LMArguments:
    """Which data, tokenizer and model."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset with a 'text' column."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration."})
    train_file: str | None = field(default=None, metadata={"help": "Training text (.txt, one document or many)."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation text (reported)."})
    validation_split_percentage: float = field(
        default=10.0, metadata={"help": "Without a validation file: %% of the training text held out (the end)."}
    )
    selection_split_percentage: float = field(
        default=5.0, metadata={"help": "%% of the training blocks held out to choose soups and greedy selections on."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Pretrained tokenizer (else train one)."})
    vocab_size: int = field(default=2048, metadata={"help": "Vocabulary of the tokenizer trained on the text."})
    config_name: str | None = field(default=None, metadata={"help": "A config to start from, e.g. gpt2."})
    model_size: str = field(default="cpu-tiny", metadata={"help": f"Size preset: {', '.join(MODEL_SIZES)}."})
    n_layer: int | None = field(default=None, metadata={"help": "Override the preset's layers."})
    n_head: int | None = field(default=None, metadata={"help": "Override the preset's heads."})
    n_embd: int | None = field(default=None, metadata={"help": "Override the preset's width."})
    block_size: int = field(default=128, metadata={"help": "Tokens per training example (texts are grouped)."})
    max_train_blocks: int | None = field(default=None, metadata={"help": "Use only this many training blocks."})
    max_eval_blocks: int | None = field(default=None, metadata={"help": "Use only this many validation blocks."})

    def __post_init__(self) -> None:
        if self.dataset_name is None and self.train_file is None:
            raise ValueError("give --dataset_name or --train_file")
        for name in ("train_file", "validation_file"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"--{name} {path} does not exist")
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"--model_size must be one of {', '.join(MODEL_SIZES)}; got {self.model_size!r}")
        if not 0 < self.validation_split_percentage < 50 or not 0 <= self.selection_split_percentage < 50:
            raise ValueError(
                "--validation_split_percentage must be in (0, 50) and --selection_split_percentage in [0, 50)"
            )
        if self.block_size < 8:
            raise ValueError(f"--block_size must be >= 8; got {self.block_size}")

    def recorded_dataset_name(self) -> str | None:
        """`--dataset_name` as the manifest records it (`hf_sgdr.data.dataset_reference`)."""
        return None if self.dataset_name is None else dataset_reference(self.dataset_name)

    def held_out_blocks_record(self, validation_cut: bool, blocks_used: int, held_out: list[int]) -> dict[str, Any]:
        """The manifest's record of the training blocks held out to choose on (`TRAIN_BLOCKS_KEY`), where the command
        can cut the same blocks again: the whole train split of a dataset. A text file is read by paragraph here
        and by line there, and a validation cut shortens the split: no record then."""
        if self.dataset_name is None or validation_cut or not held_out:
            return {}
        record = TrainData(
            "train",
            blocks_used,
            tuple(held_out),
            dataset_name=self.recorded_dataset_name(),
            dataset_config_name=self.dataset_config_name,
        )
        return {TRAIN_BLOCKS_KEY: record.to_dict()}

    def manifest_facts(self, validation_cut: bool) -> dict[str, Any]:
        """What `hf-sgdr evaluate` needs to report on the text the run's table did: the dataset, the block size,
        the reported split and its block limit; where the validation text was cut from the training text (no file
        or split of its own to name), a description of that text."""
        facts: dict[str, Any] = {
            "block_size": self.block_size,
            # The data's own split, or none: a text cut from the training text is no split to load.
            "eval_split": None if validation_cut else "validation",
            "max_eval_blocks": self.max_eval_blocks,
        }
        if self.dataset_name is not None:
            facts.update(dataset_name=self.recorded_dataset_name(), dataset_config_name=self.dataset_config_name)
        if validation_cut:
            if self.dataset_name:
                local = Path(self.dataset_name).is_dir()  # a local folder by its name: the sentence is published
                source = f"rows of {Path(self.dataset_name).name if local else self.dataset_name}'s train split"
            else:
                source = f"paragraphs of {Path(self.train_file or '').name}"
            facts["validation_text"] = f"the last {self.validation_split_percentage:g} % of the {source}"
        elif self.validation_file is not None and self.dataset_name is None:  # with a dataset, the file is not read
            facts["validation_text"] = Path(self.validation_file).name
        return facts


def load_texts(args: LMArguments) -> tuple[DatasetDict, bool]:
    """'train' and 'validation' splits with a 'text' column, and whether the validation text was cut from the end of
    the training text (no validation file or split)."""
    if args.dataset_name is not None:
        with loading(f"dataset {args.dataset_name!r}"):
            raw = load_dataset(args.dataset_name, args.dataset_config_name)
    else:
        files = {"train": args.train_file}
        if args.validation_file:
            files["validation"] = args.validation_file
        raw = load_dataset("text", data_files=files, sample_by="paragraph")
    if "validation" in raw:
        return raw, False
    lines = raw["train"]["text"]
    cut = int(len(lines) * (1 - args.validation_split_percentage / 100))
    raw = DatasetDict(
        {"train": Dataset.from_dict({"text": lines[:cut]}), "validation": Dataset.from_dict({"text": lines[cut:]})}
    )
    return raw, True


def make_tokenizer(args: LMArguments, texts: list[str]) -> PreTrainedTokenizerFast:
    """The named tokenizer, or a byte-level BPE trained on the training text (no download needed)."""
    if args.tokenizer_name is not None:
        with loading(f"tokenizer {args.tokenizer_name!r}"):
            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name)
    else:
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(texts, vocab_size=args.vocab_size, min_frequency=2, special_tokens=[EOS])
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=EOS, eos_token=EOS, unk_token=EOS)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lm_dataset(tokenizer: Any, texts: list[str], block_size: int) -> Dataset:
    """The `lm_blocks` of `texts` as a dataset of causal-LM examples (each block predicts its own tokens)."""
    blocks = lm_blocks(tokenizer, texts, block_size)
    return Dataset.from_dict(
        {"input_ids": blocks, "attention_mask": [[1] * len(block) for block in blocks], "labels": blocks}
    )


def make_model(args: LMArguments, tokenizer: Any) -> GPT2LMHeadModel:
    """A fresh GPT-2 of the requested size, with the tokenizer's vocabulary and the block size."""
    if args.config_name is not None:
        with loading(f"model config {args.config_name!r}"):
            config = AutoConfig.from_pretrained(args.config_name)
    else:
        n_layer, n_head, n_embd = MODEL_SIZES[args.model_size]
        config = GPT2Config(n_layer=args.n_layer or n_layer, n_head=args.n_head or n_head, n_embd=args.n_embd or n_embd)
    config.vocab_size = len(tokenizer)
    config.n_positions = max(config.n_positions, args.block_size)
    config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    return GPT2LMHeadModel(config)


def main(argv: list[str] | None = None) -> None:
    lm_args, args, options = parse_arguments(LMArguments, argv)
    accelerator = make_accelerator(args)
    raw, validation_cut = load_texts(lm_args)
    train_texts = [t for t in raw["train"]["text"] if t.strip()]
    tokenizer = make_tokenizer(lm_args, train_texts)
    blocks = lm_dataset(tokenizer, train_texts, lm_args.block_size)
    if lm_args.max_train_blocks is not None:
        blocks = blocks.select(range(min(lm_args.max_train_blocks, len(blocks))))
    selection, held_out_blocks, blocks_used = None, [], len(blocks)
    held_out = math.floor(len(blocks) * lm_args.selection_split_percentage / 100)
    if held_out >= 1:  # numbered, so that the manifest can say which blocks were held out
        split = blocks.add_column("block", list(range(len(blocks)))).train_test_split(
            test_size=held_out, seed=args.seed, shuffle=True
        )
        held_out_blocks = list(split["test"]["block"])
        blocks, selection = split["train"].remove_columns("block"), split["test"].remove_columns("block")
    eval_blocks = lm_dataset(tokenizer, raw["validation"]["text"], lm_args.block_size)
    if lm_args.max_eval_blocks is not None:
        eval_blocks = eval_blocks.select(range(min(lm_args.max_eval_blocks, len(eval_blocks))))
    for dataset in (blocks, eval_blocks, selection):
        if dataset is not None:
            dataset.set_format("torch")

    torch.manual_seed(args.seed)
    model = apply_lora(make_model(lm_args, tokenizer), args, "CAUSAL_LM")
    train_loader = DataLoader(blocks, shuffle=True, batch_size=args.per_device_train_batch_size)
    eval_loader = DataLoader(eval_blocks, batch_size=args.per_device_eval_batch_size)
    optimizer = make_optimizer(model, args)
    model, optimizer, train_loader, prepared_eval = accelerator.prepare(model, optimizer, train_loader, eval_loader)

    @torch.no_grad()
    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        """The token-level NLL of the validation blocks, as the ensemble report computes it: each block's summed
        loss and token count are gathered per block, so that the duplicates Accelerate pads an uneven last batch
        with are dropped (a batch's mean loss, repeated per block, carried them in on several processes)."""
        model.eval()
        sums, counts = [], []
        with torch.no_grad():
            for batch in prepared_eval:
                logits, labels = model(**batch).logits[:, :-1].float(), batch["labels"][:, 1:]
                scored = labels != -100
                token_loss = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), labels.masked_fill(~scored, 0), reduction="none"
                )
                sums.append(gather_for_metrics(accelerator, (token_loss * scored).sum(dim=1)))
                counts.append(gather_for_metrics(accelerator, scored.sum(dim=1)))
        nll = float(torch.cat(sums).sum() / torch.cat(counts).sum())
        return {"eval_loss": nll, "eval_perplexity": math.exp(nll)}

    # SGDR fitted to the budget, the loop of recipes/glue.py (see the comments there).
    budget = Budget.of(args, train_loader)
    scheduler = SGDRScheduler(
        optimizer,
        num_training_steps=budget.max_steps,
        warmup_steps=args.warmup_steps,
        **options.scheduler_kwargs(budget.steps_per_epoch),
    )
    sgdr = SGDRAccelerateHelper(
        accelerator,
        model,
        scheduler,
        output_dir=args.output_dir,
        options=options.without_schedule(),
        processing_class=tokenizer,  # the tokenizer trained on the text is saved with the snapshots
        task="causal_lm",
        num_training_steps=budget.max_steps,
        training_info={
            **args.manifest_facts(),
            **lm_args.manifest_facts(validation_cut),
            **lm_args.held_out_blocks_record(validation_cut, blocks_used, held_out_blocks),
        },
    )
    checkpoint = find_checkpoint(args.resume_from_checkpoint, args.output_dir)
    if checkpoint is not None:
        accelerator.print(f"resuming from {checkpoint}")
        accelerator.load_state(str(checkpoint))
    resume = ResumePoint.after(sgdr.global_step, budget.steps_per_epoch, args.gradient_accumulation_steps)
    log = TrainingLog(accelerator, args, sgdr, budget, tracker_name="gpt2_pretrain")
    for epoch in range(resume.epoch, budget.num_epochs):
        model.train()
        for batch in epoch_batches(accelerator, train_loader, epoch, skip=resume.skip(epoch)):
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            lr = float(scheduler.get_last_lr()[0])
            event = sgdr.step(loss=loss, epoch=(sgdr.global_step + 1) / budget.steps_per_epoch)
            if not accelerator.sync_gradients:
                continue
            metrics = {}
            if event is not None and args.eval_at_cycle_end:
                metrics = evaluate(model)
                sgdr.evaluate(metrics)
                accelerator.print(f"cycle {event.cycle} ended at step {sgdr.global_step}: {metrics}")
                model.train()
            log.step(sgdr.global_step, lr, loss, event, metrics)
            if args.checkpoint_due(sgdr.global_step):
                save_checkpoint(accelerator, args.output_dir, sgdr.global_step)
            if sgdr.global_step >= budget.max_steps:
                break
        if args.checkpointing_steps == "epoch":
            save_checkpoint(accelerator, args.output_dir, sgdr.global_step)
        if sgdr.global_step >= budget.max_steps:
            break
    sgdr.end()
    log.close()

    evaluate_snapshots(
        accelerator,
        args,
        sgdr,
        eval_loader,
        None if selection is None else DataLoader(selection, batch_size=args.per_device_eval_batch_size),
        eval_split="validation",
        selection_split="train_heldout",
        dataset=lm_args.recorded_dataset_name() or str(Path(cast(str, lm_args.train_file)).resolve()),
    )
    finish(accelerator)


if __name__ == "__main__":
    run_recipe(main)
