"""What `hf-sgdr evaluate` reads for a run, and what it checks before reading it.

The data source comes from the flags first, then the run's manifest (its dataset, config, block size, limits and
the training rows or blocks it held out). `check_before_loading` refuses, from the manifest alone, what the
command cannot do (an option the snapshots' kind cannot use, a dataset it cannot find) before any member is
downloaded or checksummed. `split_dataloader` builds the reported split's batches by the data layout of the
snapshots' kind; `selection_data` chooses the slice the greedy rows are chosen on: the user's, warned about where it
holds data the run trained on, or the run's own held-out rows or blocks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..snapshot_format.manifest import HELD_OUT_NAME, TRAIN_BLOCKS_KEY, TrainData
from .metrics import GLUE_METRICS, metric_names_for
from .tasks.registry import CLASS_SCORES

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

#: Tokens per block for a language model whose manifest records none.
DEFAULT_BLOCK_SIZE = 128
#: The label column of classification and regression data.
DEFAULT_LABEL_COLUMN = "label"
#: Tokens per example (truncation) for text data, where neither the flag nor the run's manifest says.
DEFAULT_MAX_LENGTH = 128
#: The flags a run's manifest may record the value of (under the same name), taken when the command leaves them unset.
_RUN_FLAGS = ("max_length", "text_columns", "label_column")


def _given_dataset(args: argparse.Namespace) -> str | None:
    """`--dataset_name` as a run's manifest would record it (a local folder resolved), to compare and load."""
    from ..data import dataset_reference

    return None if args.dataset_name is None else dataset_reference(args.dataset_name)


def data_source(args: argparse.Namespace, ensemble: Any) -> tuple[str | None, str | None, str | None]:
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


def check_before_loading(args: argparse.Namespace) -> None:
    """Refuse from the manifest alone, before the members are downloaded or their checksums computed (seconds per
    GB), a missing data source (`check_data_source`) and the options the snapshots' kind cannot use: a Hub repo's
    manifest is fetched first, as the load does; sequence classifiers are told apart (class scores or regression)
    by the first snapshot's config. `check_kind_options` runs again once the members are loaded."""
    from ..missing_resources import explain_missing
    from ..snapshot_format.loading import contained, open_manifest
    from .hub import download_file, download_manifest, is_repo_id, resolve_source
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
            kind = _kind_before_loading(
                manifest, lambda name: download_file(source, f"{name}/config.json", **options).parent
            )
    else:
        return  # the load says what is wrong with the name
    adopt_run_defaults(args, manifest)
    _, _, task = data_source(args, manifest)
    if kind is not None:
        check_kind_options(args, task_kind(kind), task)
    check_data_source(args, manifest, f"the manifest of {source}")


def check_checkpoints_before_loading(args: argparse.Namespace) -> None:
    """For `--checkpoints DIR`: refuse the options the checkpoints' kind cannot use, from the first selected
    checkpoint's config, before every checkpoint's files are checksummed (seconds per GB). The kind and task are
    found as `SnapshotEnsemble.from_checkpoints` finds them (no manifest: no recorded task or data)."""
    from types import SimpleNamespace

    from ..snapshot_format.members import auto_class_for, read_config
    from .checkpoints import find_checkpoints, select_checkpoints
    from .tasks.registry import kind_of_model, supported_auto_classes, task_kind

    first = select_checkpoints(find_checkpoints(Path(args.checkpoints)), args.snapshots)[0]
    config = read_config(first, first.name)
    auto_class = auto_class_for(config, supported_auto_classes(), first.name)
    _, _, task = data_source(args, SimpleNamespace(training={}, task=None))
    check_kind_options(args, task_kind(kind_of_model(auto_class, config.num_labels, config.problem_type)), task)


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


def adopt_run_defaults(args: argparse.Namespace, manifest: Any) -> None:
    """Set the flags left unset to what the run used, each with a note, so that the command reads the data the run's
    table did: the validation file of a run on custom data (where no dataset is named), its `max_length`, and where
    the command reads the run's data, its text and label columns. A flag once set stays set: calling it again
    (before and after loading) notes nothing new. `manifest`: the ensemble or its manifest."""
    training = manifest.training
    recorded_file = training.get("validation_file")
    runs_split = args.eval_split == training.get("eval_split", "validation")
    runs_data = args.dataset_name is None and args.validation_file in (None, recorded_file)
    if recorded_file and args.validation_file is None and runs_data and runs_split:
        if not Path(recorded_file).is_file():
            raise ValueError(
                f"the run reported on its validation file {recorded_file} (manifest.json training.validation_file), "
                "and there is no such file here: pass --validation_file with your copy of it, or --dataset_name"
            )
        args.validation_file = recorded_file
        print(f"note: reporting on the run's validation file {recorded_file}", file=sys.stderr)
    for flag in _RUN_FLAGS:
        recorded = training.get(flag)
        if flag != "max_length" and not runs_data:  # the columns are the run's data's; max_length the model's
            continue
        if getattr(args, flag) is None and recorded is not None:
            setattr(args, flag, recorded)
            shown = " ".join(recorded) if isinstance(recorded, list) else recorded
            print(f"note: --{flag} {shown}, as the run did (its manifest's {flag})", file=sys.stderr)
    if args.max_length is None:
        args.max_length = DEFAULT_MAX_LENGTH


def check_data_source(args: argparse.Namespace, manifest: Any, records: str) -> None:
    """Refuse, naming what to pass, a data source the command cannot read: no dataset named, a local dataset folder
    that is not here (a pushed manifest names the run's by its last part, `./corpus`), or a validation text the run
    cut from its training text. `manifest`: the ensemble or its manifest; `records`: what holds its record, as the
    error names it."""
    from ..local_paths import is_local_path

    selection_reads_dataset = args.selection_split not in (None, HELD_OUT_NAME) and args.selection_file is None
    if args.validation_file is not None and not selection_reads_dataset:
        return
    dataset_name, _, _ = data_source(args, manifest)
    reported = manifest.training.get("validation_text")
    if dataset_name is None and args.validation_file is not None:
        raise ValueError(
            f"--selection_split {args.selection_split} is a split of a dataset, and {records} names none: pass "
            "--dataset_name, or --selection_file (or neither, to choose on the rows the run held out, if it did)"
        )
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
    if cut and args.validation_file is None and args.dataset_name is None and args.eval_split == "validation":
        limit = manifest.training.get("max_eval_blocks")
        also = f" --max_eval_blocks {limit}" if limit is not None and args.max_eval_blocks is None else ""
        raise ValueError(
            f"the run reported on {reported}, which is no split of {dataset_name}: pass --eval_split (e.g. "
            f"'train[90%:]'{also}, the run's text within rounding) or --validation_file"
        )


def _reports_on_the_runs_data(args: argparse.Namespace, ensemble: Any) -> bool:
    """Whether the command reports on the data the run's table did: no file or the run's own, no dataset or the run's
    own, the run's reported split, no limit of the command's own."""
    given = _given_dataset(args)
    return (
        args.validation_file in (None, ensemble.training.get("validation_file"))
        and (given is None or _same_dataset(given, ensemble.training.get("dataset_name")))
        and args.dataset_config_name in (None, ensemble.training.get("dataset_config_name"))
        and args.max_eval_samples is None
        and args.max_eval_blocks is None
        and ensemble.training.get("block_size") in (None, args.block_size)
        and args.eval_split == ensemble.training.get("eval_split")
    )


#: The limits a run's manifest may record on what its table reported (the command's flags of the same names),
#: and their unit.
_RUN_LIMITS = {"max_eval_samples": "examples", "max_eval_blocks": "blocks"}


def eval_limits(args: argparse.Namespace, ensemble: Any) -> tuple[int | None, int | None]:
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


def run_block_size(args: argparse.Namespace, ensemble: Any) -> int:
    """`--block_size`, else the run's (its manifest's `block_size`, with a note), else 128."""
    if args.block_size is not None:
        return args.block_size
    recorded = ensemble.training.get("block_size")
    if recorded is None or ensemble.task_kind.facts.data != "lm blocks":
        return DEFAULT_BLOCK_SIZE
    print(f"note: blocks of {recorded} tokens, as the run cut them (its manifest's block_size)", file=sys.stderr)
    return int(recorded)


def split_dataloader(
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
    dataset_name, config, task = data_source(args, ensemble)
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


def check_kind_options(args: argparse.Namespace, kind: Any, task: str | None) -> None:
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
    dataset_name, config, _ = data_source(args, ensemble)
    return _same_dataset(dataset_name, train_data.dataset_name) and config == train_data.dataset_config_name


def _same_dataset(name: str | None, recorded: str | None) -> bool:
    """Whether dataset `name` is the run's `recorded` one: the same, or a local folder of the same name as the one a
    pushed manifest names by its last part (`./corpus`): your copy of the run's data."""
    from ..local_paths import is_local_path, last_part

    if name == recorded:
        return True
    published = recorded is not None and recorded.startswith("./")
    return published and name is not None and is_local_path(name) and last_part(name) == last_part(recorded)


def check_data_file(flag: str, path: str | None) -> None:
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
    dataset_name, config, _ = data_source(args, ensemble)
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


def _warn_if_trained_on(args: argparse.Namespace, train_data: TrainData, parts: Sequence[range]) -> None:
    """Warn when the selection (`parts`: the row ranges of the run's training data it reads) holds rows the run
    trained on, as its manifest records them."""
    trained = sum(train_data.trained_rows_in(rows) for rows in parts)
    if trained:
        flag = (
            f"--selection_file {args.selection_file}"
            if args.selection_file
            else f"--selection_split {args.selection_split}"
        )
        size = "" if args.selection_file else f" of its {sum(len(rows) for rows in parts)}"
        print(
            f"warning: {flag} holds {trained}{size} examples that the run trained on (manifest.json "
            "training.train_data): the greedy soup, selection and weights would be chosen on training data. Omit "
            f"{flag.split()[0]} to choose on the held-out slice ({HELD_OUT_NAME}, {len(train_data.held_out)} examples)",
            file=sys.stderr,
        )


def selection_data(args: argparse.Namespace, ensemble: Any) -> tuple[DataLoader | None, str | None]:
    """The dataloader the greedy rows, fitted weights and temperatures are chosen on, and its name: the user's
    `--selection_split` / `--selection_file` (warned about where it holds data the run trained on), else the rows or
    blocks the run held out (`HELD_OUT_NAME`) where this evaluation reads the run's data, else none (the selection
    flags are then refused)."""
    held_out_asked = args.selection_split == HELD_OUT_NAME  # the report's name of the default, taken as it
    if held_out_asked:
        args.selection_split = None
    selection_loader, selection_name = None, args.selection_file or args.selection_split
    train_data = TrainData.from_training(ensemble.training)
    train_blocks = TrainData.from_training(ensemble.training, TRAIN_BLOCKS_KEY)
    if args.selection_split or args.selection_file:
        _warn_about_the_users_selection(args, ensemble, train_data, train_blocks)
        selection_loader = split_dataloader(
            args,
            ensemble,
            args.selection_split,
            args.selection_file,
            args.max_selection_samples,
            flag="--selection_file",
        )
    elif train_data is not None and train_data.held_out and _same_data(args, ensemble, train_data):
        selection_name = HELD_OUT_NAME  # the slice the run kept out of training
        if (train_data.data_file or "").startswith("./"):  # a pushed manifest's name for the run's file
            print(
                f"note: choosing on the rows the run held out of its training file, read as {train_data.data_file} "
                "from this folder; pass --selection_file to choose on another file",
                file=sys.stderr,
            )
        selection_loader = split_dataloader(
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
            selection_loader = split_dataloader(
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
    elif held_out_asked:
        raise ValueError(
            f"--selection_split {HELD_OUT_NAME} names the rows or blocks the run held out, and this evaluation has "
            "none: the run's manifest records none, or for other data than this evaluation reads"
        )
    else:
        _refuse_selection_flags(args, train_data or train_blocks)
    return selection_loader, selection_name


def _warn_about_the_users_selection(
    args: argparse.Namespace, ensemble: Any, train_data: TrainData | None, train_blocks: TrainData | None
) -> None:
    """Warn where `--selection_split` / `--selection_file` holds data the run trained on (its rows or blocks, as its
    manifest records them), or note that the manifest cannot tell."""
    if args.selection_file and train_data is not None and _is_training_file(args.selection_file, train_data):
        _warn_if_trained_on(args, train_data, [range(args.max_selection_samples or train_data.rows_used)])
    elif args.selection_split and train_data is not None:
        _, parts = _selection_rows(args, ensemble, train_data)
        _warn_if_trained_on(args, train_data, parts)
    elif args.selection_split and train_blocks is not None:
        _warn_if_trained_on_blocks(args, ensemble, train_blocks)
    elif args.selection_split:
        print(
            "note: the run's manifest does not record which rows it trained on, so --selection_split "
            f"{args.selection_split} cannot be checked against them; make sure it holds none of the text the run "
            "trained on",
            file=sys.stderr,
        )


def _is_training_file(path: str, train_data: TrainData) -> bool:
    """Whether `path` is the local file the run trained on (as its manifest records it)."""
    recorded = train_data.data_file
    return recorded is not None and Path(recorded).is_file() and Path(path).resolve() == Path(recorded).resolve()
