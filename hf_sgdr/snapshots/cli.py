"""`hf-sgdr evaluate OUTPUT_DIR ...` and `hf-sgdr push OUTPUT_DIR --repo-id ...`.

`add_snapshot_commands(subparsers)` adds both to the `hf-sgdr` parser (hf_sgdr.cli wires it in). What evaluate reads
for a run, and checks before loading it, is `evaluate_data`'s.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..atomic import check_output_file
from ..local_paths import user_path
from ..snapshot_format.layout import CARD_NAME
from ..snapshot_format.manifest import HELD_OUT_NAME
from ..validation import check_int
from .evaluate_data import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_LABEL_COLUMN,
    DEFAULT_MAX_LENGTH,
    adopt_run_defaults,
    check_before_loading,
    check_checkpoints_before_loading,
    check_data_file,
    check_data_source,
    check_kind_options,
    data_source,
    eval_limits,
    run_block_size,
    selection_data,
    split_dataloader,
)
from .metrics import METHODS, METRICS, metric_names_for

_EPILOG_TOKEN = "The Hub token comes from HF_TOKEN or a stored `hf auth login`; it is never taken on the command line."


def _as_value_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Missing files and unknown names become ValueErrors, which `hf-sgdr` reports as one line with exit 2."""

    @functools.wraps(handler)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except FileNotFoundError as error:
            raise ValueError(f"{error.strerror}: {error.filename}" if error.filename else str(error)) from None
        except KeyError as error:
            raise ValueError(str(error.args[0]) if error.args else "KeyError") from None

    return wrapped


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum` (argparse names the flag in its one-line error)."""

    def parse(value: str) -> int:
        try:
            return check_int("value", value, minimum=minimum)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {value!r}") from None

    return parse


def _device(value: str) -> str:
    """An argparse type: a torch device that exists here (cpu, cuda, cuda:N, mps)."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a torch device such as cpu, cuda or cuda:0; got {value!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not available: this machine has {count} CUDA device(s); use cpu"
                + (f" or cuda:0 to cuda:{count - 1}" if count else "")
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError("'mps' is not available on this machine; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps; got {value!r}")
    return value


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a failed Hub call raises: huggingface_hub's HTTP errors and those of its HTTP client (connection
    refused, timeouts), whichever client that is (`HfHubHTTPError`'s bases)."""
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError, *HfHubHTTPError.__bases__)


@_as_value_errors
def _evaluate(args: argparse.Namespace) -> int:
    from .ensemble import SnapshotEnsemble

    if (args.output_dir is None) == (args.checkpoints is None):
        raise ValueError("give OUTPUT_DIR (snapshots, Hub repo) or --checkpoints DIR (a Trainer run), one, not both")
    if args.output_json is not None:
        check_output_file(args.output_json, "--output_json", folder_must_exist=True)  # before the evaluation
    for flag in ("validation_file", "selection_file"):
        check_data_file(f"--{flag}", getattr(args, flag))
    if args.checkpoints is not None:
        for flag, given, applies in (
            ("--revision", args.revision is not None, "Hub repos"),
            ("--force_download", args.force_download, "Hub repos"),
            ("--base_model", args.base_model is not None, "snapshot folders and Hub repos"),
        ):
            if given:
                raise ValueError(f"{flag} applies to {applies}; --checkpoints reads a local Trainer output_dir")
        check_checkpoints_before_loading(args)
        ensemble = SnapshotEnsemble.from_checkpoints(args.checkpoints, checkpoints=args.snapshots, device=args.device)
    else:
        check_before_loading(args)
        ensemble = SnapshotEnsemble.from_pretrained(
            args.output_dir,
            args.revision,
            base_model=args.base_model,
            snapshots=args.snapshots,
            device=args.device,
            force_download=args.force_download,
        )
    if ensemble.tokenizer is None:
        source = args.output_dir or args.checkpoints
        raise ValueError(f"{source} holds no tokenizer files; save the tokenizer with the snapshots (checkpoints)")
    adopt_run_defaults(args, ensemble)
    dataset_name, _, task = data_source(args, ensemble)
    check_kind_options(args, ensemble.task_kind, task)
    records = f"the manifest of {args.output_dir}" if args.checkpoints is None else f"the run {args.checkpoints}"
    check_data_source(args, ensemble, records)
    args.block_size = run_block_size(args, ensemble)
    limit, max_blocks = eval_limits(args, ensemble)
    eval_loader = split_dataloader(args, ensemble, args.eval_split, args.validation_file, limit, max_blocks=max_blocks)
    selection_loader, selection_name = selection_data(args, ensemble)
    print(
        f"evaluating {ensemble.num_snapshots} snapshots on {args.validation_file or args.eval_split}"
        + (f", choosing on {selection_name}" if selection_loader is not None else "")
        + ": each snapshot, every last-k ensemble"
        + ("" if args.no_soups else ", the soups")
        + " (one progress bar over all forward passes)",
        file=sys.stderr,
    )
    report = ensemble.evaluate(
        eval_loader,
        selection_loader,
        metrics=args.metrics or metric_names_for(ensemble.task_kind, task),
        method=args.method,
        soups=not args.no_soups,
        selection_metric=args.selection_metric,
        temperature_scaling=args.temperature_scaling,
        eval_split=args.validation_file or args.eval_split,
        selection_split=selection_name or "selection",
        dataset=dataset_name,
        json_path=args.output_json,
    )
    print(report.to_table())
    if args.output_json:
        print(f"wrote {args.output_json}")
    return 0


@_as_value_errors
def _push(args: argparse.Namespace) -> int:
    from ..snapshot_format.layout import PLOT_NAME
    from ..snapshot_format.manifest import SnapshotManifest
    from .card import build_card, write_schedule_plot
    from .evaluation import EvaluationReport
    from .hub import public_manifest, push_folder, resolve_source

    if not Path(args.output_dir).is_dir():
        raise ValueError(f"OUTPUT_DIR {args.output_dir} is not a folder")
    root, _ = resolve_source(args.output_dir)
    manifest = SnapshotManifest.load(root)
    _, hidden = public_manifest(manifest)
    if hidden:
        print(f"note: the pushed manifest names local paths by their last part: {', '.join(hidden)}", file=sys.stderr)
    try:
        report = EvaluationReport.load_json(args.results) if args.results else None
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"--results: {error}") from None
    card = build_card(manifest, report=report, repo_id=args.repo_id, dataset=args.dataset_name)
    extra = {CARD_NAME: str(card).encode("utf-8")}
    with tempfile.TemporaryDirectory(prefix="hf_sgdr-plot-") as scratch:
        plot = Path(scratch) / PLOT_NAME
        if write_schedule_plot(manifest, plot):
            extra[PLOT_NAME] = plot.read_bytes()
    try:
        info = push_folder(
            root,
            args.repo_id,
            private=args.private,
            commit_message=args.commit_message,
            create_pr=args.create_pr,
            revision=args.revision,
            extra_files=extra,
        )
    except _hub_errors() as error:
        lines = [line for line in str(error).splitlines() if line.strip() and not line.startswith("For more info")]
        raise ValueError(f"the push to {args.repo_id} failed: {'; '.join(lines) or type(error).__name__}") from None
    print(f"pushed {len(manifest.snapshots)} snapshots to {args.repo_id}: {info.pr_url or info.commit_url}")
    return 0


def add_snapshot_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` and `push` subcommands (each sets `handler`, called with the parsed namespace)."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate every snapshot, the ensembles and the soups of a snapshot folder",
        description="Evaluate a snapshot ensemble: each snapshot alone, the ensemble of the last k for every k, "
        "the uniform soup, and (with a selection split) the greedy soup, greedy ensemble selection and fitted "
        "weights chosen on the selection split. Prints a table; --output_json writes the report.",
    )
    evaluate.add_argument(
        "output_dir",
        metavar="OUTPUT_DIR",
        nargs="?",
        type=user_path,
        help="snapshot folder, training output folder holding snapshots/, or Hub repo id",
    )
    evaluate.add_argument(
        "--checkpoints",
        metavar="DIR",
        type=user_path,
        help="instead of OUTPUT_DIR: a Trainer run's output_dir; its checkpoint-* folders are the members "
        "(safetensors only), e.g. to compare a cosine run's checkpoints with SGDR snapshots",
    )
    evaluate.add_argument("--revision", help="Hub revision (repo ids only)")
    evaluate.add_argument(
        "--force_download",
        action="store_true",
        help="fetch the Hub files again although the cache holds them, e.g. after a corrupt-file error",
    )
    evaluate.add_argument(
        "--snapshots", nargs="+", metavar="NAME", help="use only these snapshots (checkpoint names with --checkpoints)"
    )
    evaluate.add_argument(
        "--base_model",
        type=user_path,
        help="LoRA snapshots: the base model to load the adapters on, a Hub id or folder (default: the manifest's)",
    )
    data = evaluate.add_argument_group("data")
    data.add_argument(
        "--dataset_name", type=user_path, help="datasets id (default: the manifest's, or nyu-mll/glue for GLUE tasks)"
    )
    data.add_argument("--dataset_config_name", help="dataset config (default: the GLUE task)")
    data.add_argument("--eval_split", default="validation", help="the split reported (default: validation)")
    data.add_argument(
        "--selection_split",
        help="split that the greedy soup, selection and weights choose on, e.g. 'train[:1000]' (default: the "
        f"held-out slice of the training split that the run recorded in its manifest, '{HELD_OUT_NAME}'; a split "
        "holding rows the run trained on is warned about)",
    )
    data.add_argument(
        "--validation_file", type=user_path, help="local .txt/.csv/.json(l)/.parquet file reported instead of a split"
    )
    data.add_argument("--selection_file", type=user_path, help="local file to choose on instead of --selection_split")
    data.add_argument(
        "--max_eval_samples",
        type=_at_least(1),
        help="evaluate on the first N examples (default: the run's own N, when its manifest records one)",
    )
    data.add_argument(
        "--max_eval_blocks",
        type=_at_least(1),
        help="causal LM: evaluate on the first N blocks (default: the run's own N, when its manifest records one)",
    )
    data.add_argument("--max_selection_samples", type=_at_least(1), help="choose on the first N examples")
    data.add_argument(
        "--text_columns", nargs="+", help="text column(s) (default: the run's, else the GLUE task's, or text/sentence)"
    )
    data.add_argument(
        "--label_column",
        help=f"classification / regression: label column (default: the run's, else {DEFAULT_LABEL_COLUMN})",
    )
    data.add_argument(
        "--max_length",
        type=_at_least(1),
        help=f"max tokens per example (default: the run's if its manifest records it, else {DEFAULT_MAX_LENGTH})",
    )
    data.add_argument(
        "--block_size",
        type=_at_least(1),
        help=f"causal LM: tokens per block (default: the run's if its manifest records it, else {DEFAULT_BLOCK_SIZE})",
    )
    data.add_argument("--per_device_eval_batch_size", type=_at_least(1), default=32, help="batch size (default 32)")
    evaluate.add_argument("--metrics", nargs="+", choices=list(METRICS), help="metrics (default: the task's)")
    methods = sorted({m for methods_of_kind in METHODS.values() for m in methods_of_kind} - {"weighted"})
    evaluate.add_argument("--method", default="average", choices=methods, help="combination for the last-k ensembles")
    evaluate.add_argument("--no_soups", action="store_true", help="skip the weight soups")
    evaluate.add_argument(
        "--selection_metric", choices=list(METRICS), help="what the chosen rows optimise (default: the first metric)"
    )
    evaluate.add_argument(
        "--temperature_scaling",
        action="store_true",
        help="classification or causal LM: add rows with a temperature per snapshot / ensemble, fitted on the "
        "selection split",
    )
    evaluate.add_argument("--device", type=_device, help="compute device (default: cuda if available, else cpu)")
    evaluate.add_argument("--output_json", type=user_path, help="write the report as JSON here")
    evaluate.set_defaults(handler=_evaluate)

    push = subparsers.add_parser(
        "push",
        help="push a snapshot folder to the Hugging Face Hub in one commit, with a model card",
        description="Verify a snapshot folder and upload it (manifest, tokenizer, snapshots, a fresh model card "
        "and the schedule plot) to a Hub model repo in one commit.",
        epilog=_EPILOG_TOKEN,
    )
    push.add_argument(
        "output_dir",
        metavar="OUTPUT_DIR",
        type=user_path,
        help="snapshot folder or training output folder holding snapshots/",
    )
    push.add_argument("--repo-id", "--repo_id", "--hub_model_id", dest="repo_id", required=True, help="namespace/name")
    push.add_argument("--private", action="store_true", default=None, help="create the repo private")
    push.add_argument("--commit-message", "--commit_message", dest="commit_message", help="commit message")
    push.add_argument("--create-pr", "--create_pr", dest="create_pr", action="store_true", help="open a pull request")
    push.add_argument("--revision", help="branch to commit to (default: main)")
    push.add_argument(
        "--results", type=user_path, help="report JSON from `hf-sgdr evaluate --output_json` for the card"
    )
    push.add_argument(
        "--dataset_name", type=user_path, help="dataset id for the card (default: the report's or the manifest's)"
    )
    push.set_defaults(handler=_push)
