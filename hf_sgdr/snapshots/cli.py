"""`hf-sgdr evaluate OUTPUT_DIR ...` and `hf-sgdr push OUTPUT_DIR --repo-id ...`.

`add_snapshot_commands(subparsers)` adds both to the `hf-sgdr` parser (hf_sgdr.cli wires it in).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import check_output_file
from ..local_paths import user_path
from ..snapshot_format.layout import CARD_NAME
from ..snapshot_format.manifest import HELD_OUT_NAME, TRAIN_BLOCKS_KEY, TrainData
from ..validation import check_int
from .metrics import GLUE_METRICS, METHODS, METRICS, metric_names_for
from .tasks.registry import CLASS_SCORES

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

#: Tokens per block for a language model whose manifest records none.
DEFAULT_BLOCK_SIZE = 128
#: The label column of classification and regression data.
DEFAULT_LABEL_COLUMN = "label"
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


def _given_dataset(args: argparse.Namespace) -> str | None:
    """`--dataset_name` as a run's manifest would record it (a local folder resolved), to compare and load."""
    from ..data import dataset_reference

    return None if args.dataset_name is None else dataset_reference(args.dataset_name)


def _data_source(args: argparse.Namespace, ensemble: Any) -> tuple[str | None, str | None, str | None]:
    """(dataset id, config, task): flags first, then the manifest (`ensemble`: the ensemble or its manifest, both
    have `training` and `task`); a GLUE config is also the task."""
    dataset_name = _given_dataset(args) or ensemble.training.get("dataset_name")
    if dataset_name is None and (ensemble.task or "") in GLUE_METRICS and not args.validation_file:
        dataset_name = "nyu-mll/glue"
    config = args.dataset_config_name or ensemble.training.get("dataset_config_name")
    if config is None and dataset_name == "nyu-mll/glue":
        config = ensemble.task
    task = config if dataset_name == "nyu-mll/glue" else ensemble.task
    return dataset_name, config, task


def _check_before_loading(args: argparse.Namespace) -> None:
    """Refuse from the manifest alone, before the members are downloaded or their checksums computed (seconds per
    GB), a missing data source (`_check_data_source`) and the options the snapshots' kind cannot use: a Hub repo's
    manifest is fetched first, as the load does; sequence classifiers are told apart (class scores or regression)
    by the first snapshot's config. `_check_kind_options` runs again once the members are loaded."""
    from ..missing_resources import explain_missing
    from ..snapshot_format.loading import contained, open_manifest
    from .hub import download_manifest, download_member_config, is_repo_id, resolve_source
    from .tasks.registry import task_kind

    source = args.output_dir
    if Path(source).exists():
        root, containment = resolve_source(source, args.revision, force_download=args.force_download)
        manifest = open_manifest(root, containment)

        def config_folder(name: str) -> Path:
            return contained(root / name / "config.json", containment, f"{name}/config.json").parent

        kind = _kind_before_loading(manifest, config_folder)
    elif is_repo_id(source):
        options = {"revision": args.revision, "force_download": args.force_download}
        with explain_missing(f"the snapshot ensemble {source!r} from the Hub"):
            manifest = download_manifest(source, **options)
            kind = _kind_before_loading(manifest, lambda name: download_member_config(source, name, **options))
    else:
        return  # the load says what is wrong with the name
    _, _, task = _data_source(args, manifest)
    if kind is not None:
        _check_kind_options(args, task_kind(kind), task)
    _check_data_source(args, manifest, f"the manifest of {source}")


def _kind_before_loading(manifest: Any, config_folder: Callable[[str], Path]) -> str | None:
    """The kind of full-model snapshots from the manifest's Auto class, or where it does not decide (sequence
    classification) from the first snapshot's config (`config_folder(name)`: the folder holding it); `None` where
    neither tells (adapters, whose base model's config does)."""
    from transformers import AutoConfig

    from .tasks.registry import kind_of_auto_class, kind_of_model

    decided = kind_of_auto_class(manifest.auto_class)
    if decided is not None or manifest.snapshot_type != "full_model" or not manifest.snapshots:
        return decided
    folder = config_folder(manifest.snapshots[0].name)
    if not (folder / "config.json").is_file():
        return None  # the load names the missing file
    config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    return kind_of_model(manifest.auto_class, config.num_labels, config.problem_type)


def _check_data_source(args: argparse.Namespace, manifest: Any, records: str) -> None:
    """Refuse, naming what to pass, a data source the command cannot read: no dataset named, a local dataset folder
    that is not here (a pushed manifest names the run's by its last part, `./corpus`), or a validation text the run
    cut from its training text. `manifest`: the ensemble or its manifest; `records`: what holds its record, as the
    error names it."""
    from ..local_paths import is_local_path

    if args.validation_file is not None:
        return
    dataset_name, _, _ = _data_source(args, manifest)
    reported = manifest.training.get("validation_text")
    if dataset_name is None:
        raise ValueError(
            f"pass a dataset name (--dataset_name) or a local file (--validation_file): {records} "
            "names no dataset" + (f" (the run reported on {reported})" if reported else "")
        )
    if is_local_path(dataset_name) and not Path(dataset_name).exists():
        if args.dataset_name is not None:
            raise ValueError(f"--dataset_name {args.dataset_name}: no such folder (a Hub dataset id is namespace/name)")
        raise ValueError(
            f"the run trained on a local dataset, {dataset_name} (manifest.json training.dataset_name), and there is "
            "no such folder here: pass --dataset_name with your copy of it, or --validation_file"
        )
    cut = reported and "eval_split" in manifest.training and manifest.training["eval_split"] is None
    if cut and args.dataset_name is None and args.eval_split == "validation":
        limit = manifest.training.get("max_eval_blocks")
        also = f" --max_eval_blocks {limit}" if limit is not None and args.max_eval_blocks is None else ""
        raise ValueError(
            f"the run reported on {reported}, which is no split of {dataset_name}: pass --eval_split (e.g. "
            f"'train[90%:]'{also}, the run's text within rounding) or --validation_file"
        )


def _reports_on_the_runs_data(args: argparse.Namespace, ensemble: Any) -> bool:
    """Whether the command reports on the data the run's table did: no file given, no dataset or the run's own, the
    run's reported split, no limit of the command's own."""
    given = _given_dataset(args)
    return (
        args.validation_file is None
        and given in (None, ensemble.training.get("dataset_name"))
        and args.dataset_config_name in (None, ensemble.training.get("dataset_config_name"))
        and args.max_eval_samples is None
        and args.max_eval_blocks is None
        and ensemble.training.get("block_size") in (None, args.block_size)
        and args.eval_split == ensemble.training.get("eval_split")
    )


#: The limits a run's manifest may record on what its table reported (the command's flags of the same names),
#: and their unit.
_RUN_LIMITS = {"max_eval_samples": "examples", "max_eval_blocks": "blocks"}


def _eval_limits(args: argparse.Namespace, ensemble: Any) -> tuple[int | None, int | None]:
    """(examples, blocks) to report on: `--max_eval_samples` / `--max_eval_blocks`, else the run's own limits (its
    manifest's, under the same names) when the data is the run's. The command then reports on what the run's
    table did."""
    if not _reports_on_the_runs_data(args, ensemble):
        return args.max_eval_samples, args.max_eval_blocks
    limits = {key: ensemble.training.get(key) for key in _RUN_LIMITS}
    for key, recorded in limits.items():
        if recorded is not None:
            print(
                f"note: reporting on the first {recorded} {_RUN_LIMITS[key]} of {args.eval_split}, as the run did "
                f"(its manifest's {key}); pass --{key} to change that",
                file=sys.stderr,
            )
    return limits["max_eval_samples"], limits["max_eval_blocks"]


def _block_size(args: argparse.Namespace, ensemble: Any) -> int:
    """`--block_size`, else the run's (its manifest's `block_size`, with a note), else 128."""
    if args.block_size is not None:
        return args.block_size
    recorded = ensemble.training.get("block_size")
    if recorded is None or ensemble.task_kind.facts.data != "lm blocks":
        return DEFAULT_BLOCK_SIZE
    print(f"note: blocks of {recorded} tokens, as the run cut them (its manifest's block_size)", file=sys.stderr)
    return int(recorded)


def _dataloader(
    args: argparse.Namespace,
    ensemble: Any,
    split: str | None,
    data_file: str | None,
    limit: int | None,
    rows: Sequence[int] | None = None,
    *,
    flag: str = "--validation_file",
    max_blocks: int | None = None,
    blocks: Sequence[int] | None = None,
) -> DataLoader:
    from ..data import dataset_dataloader, load_split

    layout = ensemble.task_kind.facts.data
    if layout is None:
        raise ValueError(
            f"hf-sgdr evaluate builds text-classification and language-model data; for {ensemble.kind} snapshots "
            "build the dataloader yourself and call SnapshotEnsemble.evaluate (docs/ensembles.md, More tasks)"
        )
    dataset_name, config, task = _data_source(args, ensemble)
    try:
        dataset = load_split(split, dataset_name=dataset_name, config_name=config, data_file=data_file)
    except ValueError as error:
        if data_file is not None:
            raise ValueError(f"{flag} {error}") from None
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        if config is None and lines and "config" in lines[0].lower():  # several configurations and none chosen
            listed = [line for line in lines[1:] if line.startswith("Please pick one among")]  # online, the list
            raise ValueError(f"{'; '.join(lines[:1] + listed)}; choose one with --dataset_config_name") from None
        raise
    if rows is not None:
        dataset = dataset.select(rows)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset_dataloader(
        dataset,
        ensemble.tokenizer,
        layout,
        text_columns=args.text_columns,
        label_column=args.label_column or DEFAULT_LABEL_COLUMN,
        task=task,
        max_length=args.max_length,
        block_size=args.block_size,
        max_blocks=max_blocks,
        blocks=blocks,
        batch_size=args.per_device_eval_batch_size,
        num_labels=_num_labels(ensemble),
        label_flag=f"--label_column {args.label_column or DEFAULT_LABEL_COLUMN} of {data_file or split}",
    )


def _num_labels(ensemble: Any) -> int | None:
    """The class count of a class-score ensemble's models (from the first snapshot's config.json), else None."""
    if ensemble.task_kind.facts.outputs != CLASS_SCORES or not ensemble.snapshot_names:
        return None
    from transformers import AutoConfig

    folder = ensemble._members[0].folder  # the verified snapshot (or checkpoint) folder
    if folder is None or not (folder / "config.json").is_file():
        return None
    return AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False).num_labels


@_as_value_errors
def _evaluate(args: argparse.Namespace) -> int:
    from .ensemble import SnapshotEnsemble

    if (args.output_dir is None) == (args.checkpoints is None):
        raise ValueError("give OUTPUT_DIR (snapshots, Hub repo) or --checkpoints DIR (a Trainer run), one, not both")
    if args.output_json is not None:
        check_output_file(args.output_json, "--output_json", folder_must_exist=True)  # before the evaluation
    for flag in ("validation_file", "selection_file"):
        _check_file(f"--{flag}", getattr(args, flag))
    if args.checkpoints is not None:
        for flag, given in (("--revision", args.revision is not None), ("--force_download", args.force_download)):
            if given:
                raise ValueError(f"{flag} applies to Hub repos; --checkpoints reads a local Trainer output_dir")
        ensemble = SnapshotEnsemble.from_checkpoints(args.checkpoints, checkpoints=args.snapshots, device=args.device)
    else:
        _check_before_loading(args)
        ensemble = SnapshotEnsemble.from_pretrained(
            args.output_dir,
            args.revision,
            snapshots=args.snapshots,
            device=args.device,
            force_download=args.force_download,
        )
    if ensemble.tokenizer is None:
        source = args.output_dir or args.checkpoints
        raise ValueError(f"{source} holds no tokenizer files; save the tokenizer with the snapshots (checkpoints)")
    dataset_name, _, task = _data_source(args, ensemble)
    _check_kind_options(args, ensemble.task_kind, task)
    records = f"the manifest of {args.output_dir}" if args.checkpoints is None else f"the run {args.checkpoints}"
    _check_data_source(args, ensemble, records)
    args.block_size = _block_size(args, ensemble)
    limit, max_blocks = _eval_limits(args, ensemble)
    eval_loader = _dataloader(args, ensemble, args.eval_split, args.validation_file, limit, max_blocks=max_blocks)
    selection_loader, selection_name = None, args.selection_file or args.selection_split
    train_data = TrainData.from_training(ensemble.training)
    train_blocks = TrainData.from_training(ensemble.training, TRAIN_BLOCKS_KEY)
    if args.selection_split or args.selection_file:
        if args.selection_split and train_data is not None:
            _warn_if_trained_on(args, ensemble, train_data)
        elif args.selection_split and train_blocks is not None:
            _warn_if_trained_on_blocks(args, ensemble, train_blocks)
        elif args.selection_split:
            print(
                "note: the run's manifest does not record which rows it trained on, so --selection_split "
                f"{args.selection_split} cannot be checked against them; make sure it holds none of the text the run "
                "trained on",
                file=sys.stderr,
            )
        selection_loader = _dataloader(
            args,
            ensemble,
            args.selection_split,
            args.selection_file,
            args.max_selection_samples,
            flag="--selection_file",
        )
    elif train_data is not None and train_data.held_out and _same_data(args, ensemble, train_data):
        selection_name = HELD_OUT_NAME  # the slice the run kept out of training
        selection_loader = _dataloader(
            args,
            ensemble,
            train_data.split,
            train_data.data_file,
            args.max_selection_samples,
            train_data.held_out,
            flag="the run's training data file (manifest.json training.train_data)",
        )
    elif train_blocks is not None and _same_blocks(args, ensemble, train_blocks):
        selection_name = HELD_OUT_NAME  # the blocks the run kept out of training
        try:
            selection_loader = _dataloader(
                args,
                ensemble,
                train_blocks.split,
                None,
                None,
                max_blocks=train_blocks.rows_used,
                blocks=train_blocks.held_out[: args.max_selection_samples],
            )
        except ValueError as error:
            raise ValueError(
                f"the run's held-out blocks (manifest.json training.{TRAIN_BLOCKS_KEY}) are not blocks of "
                f"{train_blocks.dataset_name}'s {train_blocks.split} split now ({error}): has it changed since the "
                "run? Pass --selection_split or --selection_file"
            ) from None
    else:
        _refuse_selection_flags(args, train_data or train_blocks)
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


def _check_kind_options(args: argparse.Namespace, kind: Any, task: str | None) -> None:
    """`--method`, `--metrics`, `--selection_metric` and the data flags of other kinds (a language model's blocks,
    a classifier's labels) against the snapshots' kind, before any data is read."""
    methods = [method for method in kind.methods if method != "weighted"]  # weights are the chosen rows' business
    if args.method not in methods:
        raise ValueError(
            f"--method {args.method} does not apply to {kind.name} snapshots; accepted: {', '.join(methods)}"
        )
    if args.label_column is not None and kind.facts.data == "lm blocks":
        raise ValueError(
            f"--label_column applies to labelled data; {kind.name} snapshots are scored on the text itself"
        )
    if kind.facts.data != "lm blocks":
        for flag, given in (("--max_eval_blocks", args.max_eval_blocks), ("--block_size", args.block_size)):
            if given is not None:
                raise ValueError(f"{flag} applies to language models, not to {kind.name} snapshots")
    for flag, names in (("--metrics", args.metrics), ("--selection_metric", args.selection_metric)):
        if names:
            try:
                metric_names_for(kind, task, [names] if isinstance(names, str) else names)
            except ValueError as error:
                raise ValueError(f"{flag}: {error}") from None


def _same_blocks(args: argparse.Namespace, ensemble: Any, train_blocks: TrainData) -> bool:
    """True when this evaluation cuts the blocks the run trained on: its dataset, its text column, its block size."""
    same_cut = args.block_size == ensemble.training.get("block_size") and args.text_columns in (None, ["text"])
    return bool(train_blocks.held_out) and same_cut and _same_data(args, ensemble, train_blocks)


def _same_data(args: argparse.Namespace, ensemble: Any, train_data: TrainData) -> bool:
    """True when this evaluation reads the dataset the run trained on (so its recorded row numbers apply)."""
    if train_data.data_file is not None:
        return args.dataset_name is None and args.dataset_config_name is None
    dataset_name, config, _ = _data_source(args, ensemble)
    return (dataset_name, config) == (train_data.dataset_name, train_data.dataset_config_name)


def _check_file(flag: str, path: str | None) -> None:
    """A data file flag names an existing file (else an error with the closest name beside it)."""
    if path is None or Path(path).is_file():
        return
    from ..snapshot_format.loading import closest_sibling

    close = closest_sibling(Path(path))
    hint = f" (did you mean {close}?)" if close else ""
    raise ValueError(f"{flag} {path} is not a file{hint}")


def _refuse_selection_flags(args: argparse.Namespace, train_data: TrainData | None) -> None:
    """Without a selection split, the flags that need one are errors, not silently ignored; without them, a note
    says which rows of the table are left out and why."""
    if train_data is None or not train_data.held_out:
        why = (
            "the run's manifest records no held-out slice (recipes/glue.py records one, recipes/gpt2_pretrain.py "
            "for a dataset's whole train split only; a Trainer run does not)"
        )
    else:
        why = (
            "the held-out slice the manifest records belongs to another dataset (or block size) than the one evaluated"
        )
    needing = [
        flag
        for flag, given in (
            ("--temperature_scaling", args.temperature_scaling),
            ("--selection_metric", args.selection_metric is not None),
            ("--max_selection_samples", args.max_selection_samples is not None),
        )
        if given
    ]
    if not needing:
        print(
            f"note: no selection split, so no best snapshot, greedy soup, greedy ensemble selection or fitted "
            f"weights: {why}; pass --selection_split or --selection_file for them",
            file=sys.stderr,
        )
        return
    raise ValueError(
        f"{', '.join(needing)} needs a selection split and there is none: {why}; pass --selection_split SPLIT "
        "(rows the run did not train on, e.g. 'validation[:50%]') or --selection_file FILE"
    )


def _selection_rows(args: argparse.Namespace, ensemble: Any, train_data: TrainData) -> tuple[Any, list[range]]:
    """(the run's training split, the row ranges of it that `--selection_split` reads), or (None, []) when the
    selection is not read from the run's training split."""
    import datasets

    from ..data import load_split

    if train_data.data_file is not None or not _same_data(args, ensemble, train_data):
        return None, []
    dataset_name, config, _ = _data_source(args, ensemble)
    split = load_split(train_data.split, dataset_name=dataset_name, config_name=config)
    try:
        parts = datasets.ReadInstruction.from_spec(args.selection_split).to_absolute({train_data.split: len(split)})
    except ValueError:  # a split other than the training one
        return None, []
    return split, [range(part.from_, part.to) for part in parts]


def _warn_if_trained_on_blocks(args: argparse.Namespace, ensemble: Any, train_blocks: TrainData) -> None:
    """Warn when `--selection_split` holds text of blocks the run trained on: its rows' tokens, placed as the run
    cut its training split (`lm_blocks` at the run's block size), fall in blocks its manifest does not hold out."""
    from ..data import lm_blocks_of_rows, lm_text_column

    block_size = ensemble.training.get("block_size")
    split, parts = _selection_rows(args, ensemble, train_blocks)
    if split is None or not isinstance(block_size, int) or block_size < 1:
        return
    column = lm_text_column(split.column_names)  # the recipe's text column: the run's blocks, whatever is scored
    held_out, trained = set(train_blocks.held_out), set()
    for rows in parts:
        texts = split.select(range(min(rows.stop, len(split))))[column]
        blocks = lm_blocks_of_rows(ensemble.tokenizer, texts, rows, block_size)
        trained.update(b for b in blocks if b < train_blocks.rows_used and b not in held_out)
    if trained:
        print(
            f"warning: --selection_split {args.selection_split} holds text of {len(trained)} blocks that the run "
            f"trained on (manifest.json training.{TRAIN_BLOCKS_KEY}, blocks of {block_size} tokens): the greedy soup, "
            f"selection and weights would be chosen on training data. Omit --selection_split to choose on the "
            f"held-out blocks ({HELD_OUT_NAME}, {len(held_out)} blocks)",
            file=sys.stderr,
        )


def _warn_if_trained_on(args: argparse.Namespace, ensemble: Any, train_data: TrainData) -> None:
    """Warn when `--selection_split` holds rows the run trained on (as its manifest records them)."""
    _, parts = _selection_rows(args, ensemble, train_data)
    trained = sum(train_data.trained_rows_in(rows) for rows in parts)
    if trained:
        size = sum(len(rows) for rows in parts)
        print(
            f"warning: --selection_split {args.selection_split} holds {trained} of its {size} examples that the run "
            "trained on (manifest.json training.train_data): the greedy soup, selection and weights would be chosen "
            f"on training data. Omit --selection_split to choose on the held-out slice ({HELD_OUT_NAME}, "
            f"{len(train_data.held_out)} examples)",
            file=sys.stderr,
        )


@_as_value_errors
def _push(args: argparse.Namespace) -> int:
    from ..snapshot_format.layout import PLOT_NAME
    from ..snapshot_format.manifest import SnapshotManifest
    from .card import build_card, write_schedule_plot
    from .evaluation import EvaluationReport
    from .hub import push_folder, resolve_source

    if not Path(args.output_dir).is_dir():
        raise ValueError(f"OUTPUT_DIR {args.output_dir} is not a folder")
    root, _ = resolve_source(args.output_dir)
    manifest = SnapshotManifest.load(root)
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
    data.add_argument("--text_columns", nargs="+", help="text column(s) (default: the GLUE task's, or text/sentence)")
    data.add_argument(
        "--label_column", help=f"classification / regression: label column (default: {DEFAULT_LABEL_COLUMN})"
    )
    data.add_argument("--max_length", type=_at_least(1), default=128, help="max tokens per example (default 128)")
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
