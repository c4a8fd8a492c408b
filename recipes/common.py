"""What the recipes share around their training loops: the usual flags, the accelerator, the optimizer,
the per-step record (log file, progress bar, trackers) and the final multi-snapshot evaluation (table,
JSON, plot, card, push).

Only `hf_sgdr`'s public API is used here; the loop itself is written out in each recipe (`glue.py`,
`gpt2_pretrain.py`), as in `run_glue_no_trainer.py`, with the checkpoint and resume functions of
`hf_sgdr.training`.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from hf_sgdr import ResourceNotFoundError, SGDRAccelerateHelper
from hf_sgdr.snapshots import EvaluationReport, SnapshotEnsemble, log_report, schedule_figure
from hf_sgdr.training import CycleEndEvent, ResumeMismatchError, SGDROptions

logger = get_logger(__name__)

RESULTS_NAME = "ensemble_results.json"
PLOT_NAME = "lr_schedule.png"
LOG_NAME = "train_log.jsonl"  # one line per optimizer step: step, lr used, loss (one per step after a resume too)


@dataclass
class RunArguments:
    """The flags every Hugging Face `*_no_trainer.py` script has (names kept)."""

    output_dir: str = field(metadata={"help": "Where snapshots, checkpoints, results and plots go."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Batch size per process for training."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Batch size for evaluation."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate of every cycle."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not on biases and norms)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Training epochs (if --max_train_steps unset)."})
    max_train_steps: int | None = field(
        default=None, metadata={"help": "Total optimizer steps; overrides --num_train_epochs."}
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warmup (optimizer steps) before cycle 0."})
    seed: int = field(default=42, metadata={"help": "Seed for initialisation, shuffling and dropout."})
    checkpointing_steps: str | None = field(
        default=None,
        metadata={"help": "Save an Accelerate checkpoint every N optimizer steps, or 'epoch' at each epoch end."},
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder to resume from, or 'latest' in --output_dir."}
    )
    with_tracking: bool = field(default=False, metadata={"help": "Log to the trackers of --report_to."})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard, wandb, ... or 'all'."})
    eval_at_cycle_end: bool = field(
        default=True, metadata={"help": "Evaluate at every cycle end; the metric is recorded with the snapshot."}
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Push the snapshot ensemble with its model card."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Repo id for --push_to_hub."})
    hub_token: str | None = field(default=None, metadata={"help": "Token (default: HF_TOKEN or the stored login)."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    lora_r: int | None = field(default=None, metadata={"help": "Train a LoRA adapter of this rank (needs peft)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules to adapt (default: peft's choice for the architecture)."}
    )

    def __post_init__(self) -> None:
        checks = {
            "per_device_train_batch_size": self.per_device_train_batch_size >= 1,
            "per_device_eval_batch_size": self.per_device_eval_batch_size >= 1,
            "gradient_accumulation_steps": self.gradient_accumulation_steps >= 1,
            "learning_rate": self.learning_rate > 0,
            "num_train_epochs": self.num_train_epochs > 0,
            "max_train_steps": self.max_train_steps is None or self.max_train_steps >= 1,
            "warmup_steps": self.warmup_steps >= 0,
            "lora_r": self.lora_r is None or self.lora_r >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--{name} must be positive (warmup_steps >= 0); got {getattr(self, name)!r}")
        if self.checkpointing_steps not in (None, "epoch") and not (
            str(self.checkpointing_steps).isdigit() and int(self.checkpointing_steps) >= 1
        ):
            raise ValueError(
                f"--checkpointing_steps must be a positive integer or 'epoch'; got {self.checkpointing_steps!r}"
            )
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id (namespace/name)")

    def manifest_facts(self) -> dict[str, int]:
        """What the snapshot manifest's `training` section records of the run that the Accelerate helper cannot
        see (it would record `None`)."""
        return {"per_device_train_batch_size": self.per_device_train_batch_size, "seed": self.seed}

    def checkpoint_due(self, step: int) -> bool:
        """True when `--checkpointing_steps N` asks for a checkpoint after optimizer step `step`."""
        return str(self.checkpointing_steps).isdigit() and step % int(self.checkpointing_steps) == 0


def parse_arguments(task_arguments: type, argv: Sequence[str] | None = None) -> tuple[Any, RunArguments, SGDROptions]:
    """Parse the recipe's task flags, the run flags and the SGDR flags (`--T_0`, `--num_cycles`, ...).

    `--config FILE.json` supplies defaults (any flag, by its name); the command line overrides them.
    A bad value exits with status 2 and a message naming the flag.
    """
    parser = HfArgumentParser((task_arguments, RunArguments, SGDROptions))
    parser.add_argument("--config", default=None, help="JSON file of flag defaults (e.g. recipes/configs/*.json)")
    argv = [_home_expanded(token) for token in (sys.argv[1:] if argv is None else argv)]
    config_path = _pop_flag(argv, "--config")
    if config_path is not None:
        try:
            defaults = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            parser.error(f"--config {config_path}: {error}")
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(defaults) - known)
        if unknown:
            parser.error(f"--config {config_path}: unknown flag(s) {unknown}")
        parser.set_defaults(**{name: _home_expanded(value) for name, value in defaults.items()})
        for action in parser._actions:  # a default from the file satisfies a required flag
            if action.dest in defaults:
                action.required = False
    try:
        task_args, run_args, options, *_ = parser.parse_args_into_dataclasses(argv)  # *_: the --config namespace
    except ValueError as error:
        parser.error(str(error))
    if options.save_snapshots:
        _require_late_imports(parser)
    return task_args, run_args, options


def _home_expanded(value: Any) -> Any:
    """A flag's value with a leading `~` expanded, as a shell does for a word but not after `--flag=` (nor in a
    config file): `--train_file=~/data/train.csv` names the file in the home folder."""
    if not isinstance(value, str):
        return value
    if value.startswith("--") and "=~" in value:
        flag, path = value.split("=", 1)
        return f"{flag}={os.path.expanduser(path)}"
    return os.path.expanduser(value) if value.startswith("~") else value


#: What a recipe imports only at its end, after training (module: what needs it); checked before training starts.
LATE_IMPORTS = {"matplotlib": "the lr plot written with the ensemble's results"}


def _require_late_imports(parser: HfArgumentParser) -> None:
    """Exit now, naming the extra to install, when a module the end of the run needs is missing: the run
    would otherwise fail after all its training."""
    missing = [name for name in LATE_IMPORTS if importlib.util.find_spec(name) is None]
    if missing:
        needs = "; ".join(f"{name} for {LATE_IMPORTS[name]}" for name in missing)
        parser.error(
            f"missing {needs}, needed after training: pip install 'hf-sgdr[recipes]' "
            "(or --save_snapshots false: no snapshots, no ensemble evaluation)"
        )


def _pop_flag(argv: list[str], flag: str) -> str | None:
    for index, item in enumerate(argv):
        if item == flag and index + 1 < len(argv):
            value = argv[index + 1]
            del argv[index : index + 2]
            return value
        if item.startswith(flag + "="):
            del argv[index]
            return item.split("=", 1)[1]
    return None


def configure_logging(is_main_process: bool) -> None:
    """Timestamped INFO logs on the main process, warnings only on the others. `huggingface_hub` keeps its
    own handler and, unlike transformers, also propagates to the root logger: each of its lines (the Hub
    retries of a run without network, say) would print twice, so its propagation is turned off."""
    from huggingface_hub.utils import logging as hub_logging

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    hub_logging.disable_propagation()


def make_accelerator(args: RunArguments) -> Accelerator:
    """An `Accelerator` (mixed precision and processes come from `accelerate launch`) with a seedable
    sampler, so that a resumed run sees the same batches as an uninterrupted one."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    configure_logging(accelerator.is_main_process)
    if accelerator.num_processes == 1 and one_process_of_several(os.environ):
        logger.warning(
            "accelerate launch was asked for several processes (--num_processes) but started one: with --cpu it "
            "runs the script once. On CPU, launch `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu "
            "--num_processes N ...` (docs/accelerate.md)",
            main_process_only=True,
        )
    set_seed(args.seed)
    if accelerator.is_main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return accelerator


def one_process_of_several(environ: Any) -> bool:
    """Whether `accelerate launch --cpu --num_processes N` (N > 1) started this single process: its CPU launcher
    runs the script once and leaves only the rendezvous address behind (`MASTER_ADDR`, no `WORLD_SIZE`)."""
    return (
        environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1", "yes")
        and "MASTER_ADDR" in environ
        and "WORLD_SIZE" not in environ
    )


def apply_lora(model: torch.nn.Module, args: RunArguments, task_type: str) -> torch.nn.Module:
    """Wrap `model` in a LoRA adapter when `--lora_r` is given (snapshots then hold only the adapter)."""
    if args.lora_r is None:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=task_type,
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.lora_target_modules,
    )
    return get_peft_model(model, config)


def make_optimizer(model: torch.nn.Module, args: RunArguments) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, without weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=args.learning_rate)


@dataclass(frozen=True)
class Budget:
    """The training budget in optimizer steps: --max_train_steps, or --num_train_epochs of the dataloader."""

    steps_per_epoch: int
    max_steps: int
    num_epochs: int

    @classmethod
    def of(cls, args: RunArguments, train_dataloader: DataLoader) -> Budget:
        """The budget of `args` over `train_dataloader` (the last optimizer step of an epoch may be short)."""
        steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
        max_steps = args.max_train_steps or math.ceil(args.num_train_epochs * steps_per_epoch)
        return cls(steps_per_epoch, max_steps, math.ceil(max_steps / steps_per_epoch))


def _keep_steps_up_to(path: Path, step: int) -> None:
    """Drop the log's records after `step` (where a resumed run continues, and writes them again) and a line a kill
    cut short; rewritten through a temporary file renamed over the log."""

    def kept(line: str) -> bool:
        try:
            return int(json.loads(line)["step"]) <= step
        except (ValueError, KeyError, TypeError):
            return False

    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if kept(line)))
    os.replace(temporary, path)


class TrainingLog:
    """The record of every optimizer step: a line in `train_log.jsonl` (main process; a resumed run keeps the steps
    up to its checkpoint and writes the ones it repeats again, once), the tqdm bar, and the trackers of
    `--report_to` with `--with_tracking` (the Hub token never goes to a tracker)."""

    def __init__(
        self,
        accelerator: Accelerator,
        args: RunArguments,
        sgdr: SGDRAccelerateHelper,
        budget: Budget,
        tracker_name: str,
    ) -> None:
        self.accelerator, self.tracking = accelerator, args.with_tracking
        if self.tracking:
            config = {
                k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool)) and k != "hub_token"
            }
            accelerator.init_trackers(tracker_name, config)
        logger.info(
            f"training {budget.max_steps} optimizer steps ({budget.num_epochs} epochs of {budget.steps_per_epoch}) "
            f"on {accelerator.num_processes} process(es); cycle ends at "
            f"{sgdr.scheduler.schedule.cycle_ends_text(budget.max_steps)}",
            main_process_only=True,
        )
        self.progress = tqdm(
            total=budget.max_steps,
            initial=sgdr.global_step,
            disable=not accelerator.is_local_main_process,
            desc="train",
        )
        path = Path(args.output_dir) / LOG_NAME
        if accelerator.is_main_process and sgdr.global_step > 0 and path.is_file():
            _keep_steps_up_to(path, sgdr.global_step)
        self.file = open(path, "a", buffering=1) if accelerator.is_main_process else None  # noqa: SIM115

    def step(
        self, step: int, lr: float, loss: torch.Tensor, event: CycleEndEvent | None, metrics: dict[str, float]
    ) -> None:
        """Record optimizer step `step`: the lr it used, its loss, and the cycle end and evaluation if any."""
        loss_value = loss.item()  # one device sync per optimizer step
        if self.file is not None:
            self.file.write(json.dumps({"step": step, "lr": lr, "loss": loss_value}) + "\n")
        self.progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.3g}", refresh=False)  # shown by the update
        self.progress.update(1)
        if self.tracking:
            logs: dict[str, Any] = {"train/loss": loss_value, "train/learning_rate": lr}
            logs.update(event.as_logs() if event is not None else {})
            logs.update({f"eval/{k}": v for k, v in metrics.items()})
            self.accelerator.log({k: v for k, v in logs.items() if isinstance(v, (int, float))}, step=step)

    def close(self) -> None:
        """Close the bar and the log file (the trackers stay open for the final evaluation: `finish` ends them)."""
        self.progress.close()
        if self.file is not None:
            self.file.close()


def gather_for_metrics(accelerator: Accelerator, tensor: torch.Tensor) -> torch.Tensor:
    """Gather a per-batch tensor from every process, without the duplicates of the last uneven batch."""
    return accelerator.gather_for_metrics(tensor.contiguous()).cpu()


def evaluate_snapshots(
    accelerator: Accelerator,
    args: RunArguments,
    sgdr: SGDRAccelerateHelper,
    eval_dataloader: DataLoader,
    selection_dataloader: DataLoader | None,
    *,
    eval_split: str,
    selection_split: str,
    dataset: str,
    extra_reports: dict[str, DataLoader] | None = None,
    metrics: Any = None,
) -> EvaluationReport | None:
    """On the main process: every snapshot, the ensembles of the last k, the soups and the greedy
    selections (chosen on `selection_dataloader`, never on the reported split); a table, a JSON file,
    the lr plot with the snapshot points and metric (also to TensorBoard when it tracks the run), and the
    Hub push with the card when asked. `metrics` (default: the task's built-ins) is what
    `SnapshotEnsemble.evaluate` takes: names, an `evaluate` module, a `compute_metrics` function, or a list."""
    accelerator.wait_for_everyone()
    report = None
    if sgdr.snapshot_dir is None:
        logger.info("no snapshots were saved (--save_snapshots false): nothing to evaluate")
    elif accelerator.is_main_process:
        out = Path(args.output_dir)
        ensemble = SnapshotEnsemble.from_pretrained(sgdr.snapshot_dir, device=accelerator.device)
        report = ensemble.evaluate(
            eval_dataloader,
            selection_dataloader,
            eval_split=eval_split,
            selection_split=selection_split,
            dataset=dataset,
            json_path=out / RESULTS_NAME,
            metrics=metrics,
        )
        accelerator.print(report.to_table())
        for split, loader in (extra_reports or {}).items():
            extra = ensemble.evaluate(
                loader,
                selection_dataloader,
                eval_split=split,
                selection_split=selection_split,
                dataset=dataset,
                json_path=out / f"ensemble_results_{split}.json",
                metrics=metrics,
            )
            accelerator.print(f"\n{split}:\n{extra.to_table()}")
        figure = schedule_figure(ensemble.manifest(), report, path=out / PLOT_NAME)
        written = [out / RESULTS_NAME, *(out / f"ensemble_results_{split}.json" for split in extra_reports or {})]
        accelerator.print(
            f"wrote {', '.join(map(str, written))}{f', {out / PLOT_NAME}' if figure is not None else ''}; "
            f"snapshots in {sgdr.snapshot_dir}"
        )
        if args.with_tracking:
            _track_report(accelerator, report, figure, sgdr.num_training_steps)
        if args.push_to_hub:
            commit = ensemble.push_to_hub(
                args.hub_model_id,
                private=args.hub_private_repo,
                token=args.hub_token,
                report=report,
                dataset=dataset,
                commit_message=f"SGDR snapshot ensemble ({ensemble.num_snapshots} snapshots)",
            )
            accelerator.print(f"pushed to {getattr(commit, 'commit_url', args.hub_model_id)}")
    accelerator.wait_for_everyone()
    return report


def _track_report(accelerator: Accelerator, report: EvaluationReport, figure: Any, step: int) -> None:
    """The final table and the lr plot in the run's TensorBoard (the other trackers get the scalars only)."""
    tracker = next((t for t in accelerator.trackers if t.name == "tensorboard"), None)
    if tracker is None:
        logger.info("the ensemble table and lr plot go to TensorBoard only (--report_to tensorboard)")
        return
    log_report(tracker.tracker, report, figure, step)


def finish(accelerator: Accelerator) -> None:
    """Close the trackers and end the process group once every process is done (the last step of a recipe's
    `main`; the trackers stay open until then so that the final evaluation reaches them)."""
    accelerator.wait_for_everyone()
    accelerator.end_training()


def run_recipe(main: Callable[[], None]) -> None:
    """Run a recipe's `main` (which ends with `finish`), then free what it left in reference cycles.

    Under DDP the model's reducer holds the gloo process group through a reference cycle, so the group
    outlives `destroy_process_group`. Left to interpreter shutdown, its worker threads are destroyed
    while the interpreter is being torn down, and about 1 process in 12 aborts ("terminate called
    without an active exception"). Collecting the cycle while the interpreter is alive ends cleanly.
    A model or dataset that cannot be loaded, or a resume on other training data than the snapshots', ends the run
    with one line saying what is wrong.
    """
    try:
        main()
    except (ResourceNotFoundError, ResumeMismatchError) as error:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {error}")
    gc.collect()
