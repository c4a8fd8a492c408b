"""Fine-tune a BERT-family model on a GLUE task (or your own files) with SGDR, snapshot every cycle,
and evaluate the snapshot ensemble.

    accelerate launch recipes/glue.py --task_name sst2 \\
        --model_name_or_path sentence-transformers/all-MiniLM-L6-v2 --output_dir out/sst2 \\
        --num_cycles 4 --T_mult 1 --per_device_train_batch_size 32 --max_train_steps 400

A plain Accelerate loop (as transformers' `run_glue_no_trainer.py`) with `hf_sgdr`'s
`SGDRAccelerateHelper`: the schedule counts optimizer steps whatever the number of processes or
gradient accumulation, snapshots are written once, evaluation gathers predictions without duplicates.
Checkpoints (`--checkpointing_steps`) are written atomically and hold the scheduler, the helper and the
RNGs, so `--resume_from_checkpoint latest` continues exactly, mid-epoch included.
At the end: each snapshot, the ensembles of the last k, the soups and the greedy selections (chosen on
a slice held out of the training set, never on the reported split) as a table, `ensemble_results.json`
and `lr_schedule.png` in --output_dir; `--push_to_hub` uploads the ensemble with its model card.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from datasets import ClassLabel, Dataset, DatasetDict, load_dataset
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

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
from hf_sgdr.data import DATA_FILE_FORMATS, GLUE_TEXT_COLUMNS, load_data_files, text_columns_for
from hf_sgdr.snapshots import (
    HELD_OUT_NAME,
    PROBABILITY_METRICS,
    TRAIN_DATA_KEY,
    TrainData,
    compute_metrics,
    metric_names_for,
)
from hf_sgdr.training import ResumePoint, epoch_batches, find_checkpoint, save_checkpoint

GLUE_TASKS = tuple(GLUE_TEXT_COLUMNS)
#: Custom data formats (those of `load_data_files` that hold labelled rows).
DATA_SUFFIXES = tuple(suffix for suffix in DATA_FILE_FORMATS if suffix != ".txt")


@dataclass
class GlueArguments:
    """Which data and model."""

    model_name_or_path: str = field(
        default="sentence-transformers/all-MiniLM-L6-v2", metadata={"help": "Hub id or folder of the encoder."}
    )
    task_name: str | None = field(default=None, metadata={"help": f"GLUE task: {', '.join(GLUE_TASKS)}."})
    train_file: str | None = field(default=None, metadata={"help": "Custom training data (csv, tsv, json, parquet)."})
    validation_file: str | None = field(default=None, metadata={"help": "Custom validation data (reported)."})
    test_file: str | None = field(default=None, metadata={"help": "Labelled data reported at the end as well."})
    text_columns: list[str] | None = field(default=None, metadata={"help": "Text column(s) of custom data."})
    label_column: str = field(default="label", metadata={"help": "Label column of custom data."})
    max_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only this many evaluation examples."})
    selection_size: int = field(
        default=500,
        metadata={"help": "Examples held out of the training set to choose soups and greedy selections on."},
    )
    evaluate_metric: str | None = field(
        default=None,
        metadata={
            "help": "An `evaluate` metric for the final ensemble report instead of the built-in task metrics: a "
            "local metric script folder (offline) or a Hub metric name (evaluate.load fetches it). NLL, Brier and "
            "ECE are still reported for classification."
        },
    )

    def __post_init__(self) -> None:
        if self.task_name is not None:
            self.task_name = self.task_name.lower()
            if self.task_name not in GLUE_TASKS:
                raise ValueError(f"--task_name must be one of {', '.join(GLUE_TASKS)}; got {self.task_name!r}")
        elif self.train_file is None or self.validation_file is None:
            raise ValueError("give --task_name, or --train_file and --validation_file for custom data")
        for name in ("train_file", "validation_file", "test_file"):
            path = getattr(self, name)
            if path is None:
                continue
            if not os.path.isfile(path):
                raise ValueError(f"--{name} {path} does not exist")
            if Path(path).suffix.lower() not in DATA_SUFFIXES:
                raise ValueError(f"--{name} must end in one of {', '.join(DATA_SUFFIXES)}; got {path}")
        if self.max_length < 8 or self.selection_size < 0:
            raise ValueError("--max_length must be >= 8 and --selection_size >= 0")

    def dataset_reference(self) -> str:
        """The dataset the report and card name: GLUE's, or the training file resolved (a card shows a local file
        by its name only)."""
        if self.task_name is not None:
            return "nyu-mll/glue"
        return str(Path(cast(str, self.train_file)).resolve())

    def custom_data_facts(self, text_columns: Sequence[str]) -> dict[str, Any]:
        """What `hf-sgdr evaluate` needs to read custom data as the run did: the validation file (resolved: the
        command may run elsewhere) and the text and label columns. Nothing for a GLUE task (its name says)."""
        if self.task_name is not None:
            return {}
        return {
            "validation_file": str(Path(cast(str, self.validation_file)).resolve()),
            "text_columns": list(text_columns),
            "label_column": self.label_column,
        }


def load_raw(args: GlueArguments) -> tuple[DatasetDict, str, tuple[str, ...]]:
    """The splits, the name of the reported split, and the text columns."""
    if args.task_name is not None:
        with loading(f"GLUE task {args.task_name!r} (dataset 'nyu-mll/glue')"):
            raw = load_dataset("nyu-mll/glue", args.task_name)
        eval_split = "validation_matched" if args.task_name == "mnli" else "validation"
        return raw, eval_split, text_columns_for(raw["train"].column_names, task=args.task_name)
    files = {"train": args.train_file, "validation": args.validation_file}
    if args.test_file:
        files["test"] = args.test_file
    raw = load_data_files(files)
    columns = raw["train"].column_names
    if args.label_column not in columns:
        raise ValueError(f"--label_column {args.label_column!r} is not a column of {args.train_file}: {columns}")
    return raw, "validation", text_columns_for(columns, text_columns=args.text_columns)


def label_space(raw: DatasetDict, label_column: str) -> tuple[bool, list[Any]]:
    """(is_regression, label list): GLUE's class names, or the sorted values of custom labels."""
    feature = raw["train"].features[label_column]
    if isinstance(feature, ClassLabel):
        return False, list(feature.names)
    if feature.dtype.startswith("float"):
        return True, []
    return False, sorted(set(raw["train"][label_column]))


def main(argv: list[str] | None = None) -> None:
    glue_args, args, options = parse_arguments(GlueArguments, argv)
    accelerator = make_accelerator(args)
    raw, eval_split, text_columns = load_raw(glue_args)
    label_column = "label" if glue_args.task_name else glue_args.label_column
    is_regression, labels = label_space(raw, label_column)
    kind = "regression" if is_regression else "classification"

    with loading(f"model {glue_args.model_name_or_path!r} (its tokenizer)"):
        tokenizer = AutoTokenizer.from_pretrained(glue_args.model_name_or_path)
    label_to_id = {label: i for i, label in enumerate(labels)}
    encodes_labels = glue_args.task_name is None and not is_regression

    def preprocess(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[c] for c in text_columns]
        encoded = tokenizer(*texts, truncation=True, max_length=glue_args.max_length)
        values = batch[label_column]
        encoded["labels"] = [label_to_id[v] for v in values] if encodes_labels else values
        return encoded

    needed = ["train", eval_split] + [s for s in ("validation_mismatched", "test") if s in raw and s != eval_split]
    if glue_args.task_name is not None:
        needed = [s for s in needed if s != "test"]  # GLUE's test labels are hidden
    raw = DatasetDict({split: raw[split] for split in needed})
    if glue_args.max_train_samples is not None:  # before tokenising: a small run need not tokenise all of SST-2
        raw["train"] = raw["train"].select(range(min(glue_args.max_train_samples, len(raw["train"]))))
    with accelerator.main_process_first():
        tokenized = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names, desc="tokenising")
    train_set = tokenized["train"]
    rows_used, held_out, selection_set = len(train_set), [], None
    if glue_args.selection_size and rows_used > 2 * glue_args.selection_size:  # the rows of a train_test_split
        rows = Dataset.from_dict({"row": list(range(rows_used))})
        split = rows.train_test_split(test_size=glue_args.selection_size, seed=args.seed, shuffle=True)
        held_out = split["test"]["row"]
        train_set, selection_set = train_set.select(split["train"]["row"]), train_set.select(held_out)
    train_data = TrainData(  # recorded in the manifest: `hf-sgdr evaluate` chooses on the held-out rows by default
        "train",
        rows_used,
        tuple(held_out),
        dataset_name="nyu-mll/glue" if glue_args.task_name else None,
        dataset_config_name=glue_args.task_name,
        data_file=None if glue_args.task_name else str(Path(glue_args.train_file).resolve()),
    )

    def limit(dataset: Any) -> Any:
        n = glue_args.max_eval_samples
        return dataset if n is None else dataset.select(range(min(n, len(dataset))))

    eval_set = limit(tokenized[eval_split])
    with loading(f"model {glue_args.model_name_or_path!r}"):
        config = AutoConfig.from_pretrained(
            glue_args.model_name_or_path,
            num_labels=1 if is_regression else len(labels),
            finetuning_task=glue_args.task_name,
        )
        if not is_regression:
            config.label2id = {str(label): i for label, i in label_to_id.items()}
            config.id2label = {i: str(label) for label, i in label_to_id.items()}
        model = AutoModelForSequenceClassification.from_pretrained(glue_args.model_name_or_path, config=config)
    model = apply_lora(model, args, "SEQ_CLS")

    collator = DataCollatorWithPadding(tokenizer)
    train_loader = DataLoader(train_set, shuffle=True, collate_fn=collator, batch_size=args.per_device_train_batch_size)
    eval_loader = DataLoader(eval_set, collate_fn=collator, batch_size=args.per_device_eval_batch_size)
    optimizer = make_optimizer(model, args)
    model, optimizer, train_loader, prepared_eval = accelerator.prepare(model, optimizer, train_loader, eval_loader)

    metric_names = metric_names_for(kind, glue_args.task_name)

    @torch.no_grad()
    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        model.eval()
        predictions, references, probabilities = [], [], []
        for batch in prepared_eval:
            logits = model(**batch).logits
            predicted = logits.squeeze(-1) if is_regression else logits.argmax(dim=-1)
            predictions.append(gather_for_metrics(accelerator, predicted))
            references.append(gather_for_metrics(accelerator, batch["labels"]))
            if not is_regression:
                probabilities.append(gather_for_metrics(accelerator, logits.float().softmax(dim=-1)))
        scores = compute_metrics(
            metric_names,
            torch.cat(predictions).numpy(),
            torch.cat(references).numpy(),
            torch.cat(probabilities).numpy() if probabilities else None,
        )
        return {f"eval_{name}": value for name, value in scores.items()}

    # SGDR fitted to the budget. The scheduler stays unprepared: the helper steps it once per optimizer
    # step, whatever the number of processes, and writes a snapshot at every cycle end.
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
        processing_class=tokenizer,
        task=glue_args.task_name or kind,
        num_training_steps=budget.max_steps,
        training_info={
            **args.manifest_facts(),
            TRAIN_DATA_KEY: train_data.to_dict(),
            # what the results table reports on: `hf-sgdr evaluate` reports on the same examples by default
            "eval_split": eval_split,
            "max_eval_samples": glue_args.max_eval_samples,
            "max_length": glue_args.max_length,
            **glue_args.custom_data_facts(text_columns),
        },
    )
    checkpoint = find_checkpoint(args.resume_from_checkpoint, args.output_dir)
    if checkpoint is not None:
        accelerator.print(f"resuming from {checkpoint}")
        accelerator.load_state(str(checkpoint))  # weights, optimizer, scheduler, helper (its step count), RNGs
    resume = ResumePoint.after(sgdr.global_step, budget.steps_per_epoch, args.gradient_accumulation_steps)
    log = TrainingLog(accelerator, args, sgdr, budget, tracker_name=f"glue_{glue_args.task_name or 'custom'}")
    for epoch in range(resume.epoch, budget.num_epochs):
        model.train()
        for batch in epoch_batches(accelerator, train_loader, epoch, skip=resume.skip(epoch)):
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            lr = float(scheduler.get_last_lr()[0])  # the lr this optimizer step used
            event = sgdr.step(loss=loss, epoch=(sgdr.global_step + 1) / budget.steps_per_epoch)
            if not accelerator.sync_gradients:
                continue  # a micro-batch of a gradient accumulation
            metrics = {}
            if event is not None and args.eval_at_cycle_end:
                metrics = evaluate(model)
                sgdr.evaluate(metrics)  # recorded with the cycle's snapshot
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
    sgdr.end()  # waits for the last snapshot
    log.close()

    extra = {}
    if glue_args.task_name == "mnli":
        extra["validation_mismatched"] = DataLoader(
            limit(tokenized["validation_mismatched"]), collate_fn=collator, batch_size=args.per_device_eval_batch_size
        )
    report_metrics = None
    if glue_args.evaluate_metric is not None:
        import evaluate

        with loading(f"evaluate metric {glue_args.evaluate_metric!r}"):
            module = evaluate.load(glue_args.evaluate_metric)
        report_metrics = [module] if is_regression else [module, *PROBABILITY_METRICS]
    if "test" in tokenized and glue_args.task_name is None:
        extra["test"] = DataLoader(tokenized["test"], collate_fn=collator, batch_size=args.per_device_eval_batch_size)
    evaluate_snapshots(
        accelerator,
        args,
        sgdr,
        eval_loader,
        None
        if selection_set is None
        else DataLoader(selection_set, collate_fn=collator, batch_size=args.per_device_eval_batch_size),
        eval_split=eval_split,
        selection_split=HELD_OUT_NAME,
        dataset=glue_args.dataset_reference(),
        extra_reports=extra,
        metrics=report_metrics,
    )
    finish(accelerator)


if __name__ == "__main__":
    run_recipe(main)
