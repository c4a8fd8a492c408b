"""Safe loading of snapshot folders that may come from someone else's repo.

Before any weight is read: every path stays inside the folder (no `..`, no absolute path, no symlink out),
only safetensors are accepted (pickles such as `pytorch_model.bin` can run code when unpickled), every
file the manifest lists is present with its size and SHA-256, nothing unlisted hides in a snapshot
folder, and each safetensors header is consistent with the file (an enormous declared tensor is refused
before anything is allocated). Errors name the file.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import TMP_PREFIX, file_on_the_way
from ..quiet import transformers_bars_silenced
from .digests import mismatched_files
from .layout import SNAPSHOT_SUBDIR
from .manifest import MANIFEST_NAME, FileRecord, SnapshotManifest, SnapshotRecord

logger = logging.getLogger(__name__)

#: Serialisations that unpickle (and so can execute code) when loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".h5", ".msgpack")
#: Files each kind of snapshot must list: (weights alternatives, other required files).
REQUIRED_FILES = {
    "full_model": (("model.safetensors", "model.safetensors.index.json"), ("config.json",)),
    "peft_adapter": (("adapter_model.safetensors",), ("adapter_config.json",)),
}
#: safetensors' own limit on the JSON header.
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}
_AUTO_CLASS = re.compile(r"^AutoModel[A-Za-z0-9]*$")
_READ_CHUNK = 1 << 20


class SnapshotLoadError(ValueError):
    """A snapshot file that is missing, corrupt, unsafe or not what the manifest says."""


def pickle_refusal(path: str) -> SnapshotLoadError:
    """The error for a pickle-based file, with the reason and the way out."""
    return SnapshotLoadError(
        f"refusing {path}: it is a pickle-based checkpoint, and unpickling can execute arbitrary code. hf_sgdr "
        "loads safetensors only; re-save the model with save_pretrained() (safetensors is the default) or "
        "convert the file with the safetensors 'convert' tool."
    )


def contained(path: Path, containment: Path, what: str) -> Path:
    """`path` if it (after resolving symlinks) lies inside `containment`, else `SnapshotLoadError`."""
    resolved = path.resolve()
    if not resolved.is_relative_to(containment.resolve()):
        raise SnapshotLoadError(f"{what} resolves to {resolved}, outside {containment}: refusing a path that escapes")
    return path


def check_safetensors_header(path: Path) -> dict[str, Any]:
    """Validate a safetensors file's header against its size without reading any tensor; return the header.

    Refused: a header longer than the file or than 100 MiB, unknown dtypes, a tensor whose declared shape
    does not match its byte span, spans that overlap, leave holes, or run past the end (truncation).
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise SnapshotLoadError(f"{path} is not a safetensors file: {size} bytes, shorter than its 8-byte prefix")
        header_size = int.from_bytes(prefix, "little")
        if header_size > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise SnapshotLoadError(
                f"{path} declares a {header_size}-byte header but holds {size} bytes (truncated or not safetensors)"
            )
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:  # deep nesting: RecursionError
            raise SnapshotLoadError(f"{path} has an unreadable safetensors header: {error}") from None
    if not isinstance(header, dict):
        raise SnapshotLoadError(f"{path} has a safetensors header that is not a JSON object")
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise SnapshotLoadError(f"{path}: the safetensors __metadata__ must map names to strings (the format's rule)")
    data_size = size - 8 - header_size
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise SnapshotLoadError(f"{path}: tensor {name!r} has a malformed header entry") from None
        if not isinstance(dtype, str) or not isinstance(shape, list):
            raise SnapshotLoadError(f"{path}: tensor {name!r} has a malformed dtype or shape")
        if dtype not in _DTYPE_BYTES:
            raise SnapshotLoadError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in [*shape, begin, end]):
            raise SnapshotLoadError(f"{path}: tensor {name!r} has a malformed shape or offsets")
        declared = math.prod(shape) * _DTYPE_BYTES[dtype]
        if declared != end - begin:
            raise SnapshotLoadError(
                f"{path}: tensor {name!r} declares shape {shape} ({declared} bytes of {dtype}) "
                f"but occupies {end - begin} bytes; refusing before allocating it"
            )
        if end > data_size:
            raise SnapshotLoadError(
                f"{path}: tensor {name!r} ends at byte {end} of a {data_size}-byte data section (truncated file?)"
            )
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise SnapshotLoadError(f"{path}: tensor data overlaps or leaves a hole at byte {position}")
        position = end
    if position != data_size:
        raise SnapshotLoadError(f"{path}: {data_size - position} bytes after the last tensor (not a safetensors file)")
    return header


def _listed_on_disk(folder: Path) -> list[str]:
    """Every entry under `folder` (files, symlinks, folders that are links), '/'-separated, without following links."""
    found = []
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        base = Path(directory)
        for name in files + [d for d in subdirs if (base / d).is_symlink()]:
            found.append((base / name).relative_to(folder).as_posix())
    return found


def check_snapshot(
    root: Path, record: SnapshotRecord, snapshot_type: str, containment: Path | None = None
) -> dict[str, Path]:
    """Check one snapshot folder against its manifest record (see the module docstring), all but the checksums
    (`verify_folder` hashes every snapshot's files together); return the listed files' paths.

    `containment` is the folder no path may resolve out of (default `root`; the repo folder of a Hugging
    Face cache, whose files are links to its `blobs/`).
    """
    containment = containment or root
    weights, others = REQUIRED_FILES[snapshot_type]
    folder = contained(root / record.name, containment, f"snapshot folder {record.name!r}")
    for name in record.files:
        if name.lower().endswith(PICKLE_SUFFIXES):
            raise pickle_refusal(f"{record.name}/{name} (listed in manifest.json)")
    if not folder.is_dir():
        raise SnapshotLoadError(f"snapshot folder {record.name!r} listed in manifest.json is missing from {root}")
    for name in _listed_on_disk(folder):
        if name.lower().endswith(PICKLE_SUFFIXES):
            raise pickle_refusal(f"{record.name}/{name}")
        if name not in record.files:
            raise SnapshotLoadError(f"{record.name}/{name} is not listed in manifest.json: refusing unlisted files")
    if not any(name in record.files for name in weights):
        raise SnapshotLoadError(f"snapshot {record.name!r} lists no {' or '.join(weights)} in manifest.json")
    for name in others:
        if name not in record.files:
            raise SnapshotLoadError(f"snapshot {record.name!r} lists no {name} in manifest.json")
    paths = {}
    for name, expected in record.files.items():
        path = contained(folder / name, containment, f"{record.name}/{name}")
        if not path.is_file():
            raise SnapshotLoadError(f"{record.name}/{name} listed in manifest.json is missing")
        size = path.stat().st_size
        if size != expected.size:
            raise SnapshotLoadError(
                f"{record.name}/{name} has {size} bytes, manifest.json says {expected.size} (truncated or altered)"
            )
        if name.endswith(".safetensors"):
            check_safetensors_header(path)
        paths[name] = path
    _check_shard_index(folder, record)
    return paths


def _check_shard_index(folder: Path, record: SnapshotRecord) -> None:
    index = folder / "model.safetensors.index.json"
    if "model.safetensors.index.json" not in record.files:
        return
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        shards = set(weight_map.values())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, AttributeError, TypeError) as error:
        raise SnapshotLoadError(f"{record.name}/{index.name} is not a valid shard index: {error}") from None
    if not all(isinstance(shard, str) for shard in shards):
        raise SnapshotLoadError(f"{record.name}/{index.name}: the shard index maps tensors to non-file names")
    missing = sorted(s for s in shards if s not in record.files)
    if missing:
        raise SnapshotLoadError(f"{record.name}: the shard index names files manifest.json does not list: {missing}")


def verify_folder(
    root: Path, names: list[str] | None = None, containment: Path | None = None, *, checksums: bool = True
) -> tuple[SnapshotManifest, list[SnapshotRecord]]:
    """Load the manifest of `root` and verify the snapshots called `names` (all by default).

    Every snapshot is checked (`check_snapshot`) before any file is hashed; then the files of all of them are
    hashed together, in parallel (`digests.mismatched_files`), and the first corrupt one in manifest order is
    reported.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"snapshot folder {root} does not exist")
    manifest = open_manifest(root, containment)
    records = manifest.snapshots if names is None else [manifest.snapshot(name) for name in names]
    listed: dict[str, tuple[Path, FileRecord]] = {}
    for record in records:
        paths = check_snapshot(root, record, manifest.snapshot_type, containment)
        listed.update({f"{record.name}/{name}": (path, record.files[name]) for name, path in paths.items()})
    corrupt = mismatched_files(listed) if checksums else []
    if corrupt:
        raise SnapshotLoadError(
            f"{corrupt[0]} is corrupt: its SHA-256 differs from manifest.json (altered or damaged since it was "
            "written). Fetch the snapshot again (from the Hub: force_download=True in Python, --force_download on the "
            "command line), or leave that snapshot out by listing the others (snapshots=[...], --snapshots NAME ...)"
        )
    return manifest, records


def open_manifest(root: Path, containment: Path | None = None) -> SnapshotManifest:
    """`root/manifest.json`, refused when it resolves out of `containment` (default `root`); a folder
    without one gets an error that says what the folder is and what to do."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file() and not path.is_symlink():
        raise FileNotFoundError(_no_manifest_message(Path(root)))
    contained(path, containment or Path(root), MANIFEST_NAME)
    return SnapshotManifest.load(root)


def _no_manifest_message(root: Path) -> str:
    if re.fullmatch(r"checkpoint-\d+", root.name) and (root / "trainer_state.json").is_file():
        return _checkpoint_message(root)
    trainer_files = ("trainer_state.json", "training_args.bin")  # `training_args.bin`: `Trainer.save_model()`
    checkpoints = any(root.glob("checkpoint-*"))
    if checkpoints or any((root / name).is_file() for name in trainer_files):
        return (
            f"{root} is a Trainer output folder without snapshots (no {MANIFEST_NAME}, no snapshots/): "
            "lr_scheduler_type='sgdr' alone schedules the lr but writes no snapshots. Train with "
            "hf_sgdr.training.SGDRTrainer, or add SGDRCallback().attach(trainer) to the Trainer; both write "
            f"output_dir/snapshots/{MANIFEST_NAME}."
            + (
                " To ensemble its checkpoint-* folders instead: SnapshotEnsemble.from_checkpoints(output_dir) "
                "(hf-sgdr evaluate --checkpoints DIR)"
                if checkpoints
                else ""
            )
        )
    return (
        f"no {MANIFEST_NAME} in {root}: not an hf_sgdr snapshot folder; give the snapshot folder, the training "
        "output_dir that holds snapshots/ (written by SGDRTrainer or SGDRCallback, not by lr_scheduler_type='sgdr' "
        "alone), or a Hub repo id"
    )


def _checkpoint_message(checkpoint: Path) -> str:
    """For one `checkpoint-N` folder of a Trainer run: where the run's snapshots are, or how to ensemble its
    checkpoints."""
    run = checkpoint.parent
    if (run / SNAPSHOT_SUBDIR / MANIFEST_NAME).is_file():
        return (
            f"{checkpoint} is one training checkpoint, not a snapshot folder: this run's snapshots are in "
            f"{run / SNAPSHOT_SUBDIR} (give that folder, or the run's output_dir {run})"
        )
    return (
        f"{checkpoint} is one training checkpoint, not a snapshot folder, and {run} holds no snapshots: to "
        f"ensemble the run's checkpoints give its output_dir, SnapshotEnsemble.from_checkpoints({str(run)!r}) "
        f"(hf-sgdr evaluate --checkpoints {run})"
    )


def closest_sibling(path: Path) -> Path | None:
    """The entry beside a missing `path` whose name is closest to its name (a typo's likely target), if any."""
    parent = path.expanduser().parent
    entries = [entry.name for entry in parent.iterdir()] if parent.is_dir() else []
    close = difflib.get_close_matches(path.name, entries, n=1)
    return parent / close[0] if close else None


#: Names of folders this package and the `Trainer` write (a run's snapshots, one snapshot, a checkpoint): a
#: missing `namespace/<one of these>` is a local path that does not exist, not a Hub repo to look up.
_OUTPUT_FOLDER_NAME = re.compile(rf"^({re.escape(SNAPSHOT_SUBDIR)}|cycle-\d{{3,}}|checkpoint-\d+)$")


def check_local_source(path_or_repo_id: str | os.PathLike[str]) -> None:
    """Raise `FileNotFoundError` naming `path_or_repo_id` when it looks like a local path and does not exist.

    Local-looking: a `Path`, a name starting with `/`, `.` or `~`, with more than one `/` or a backslash, a
    `namespace/name` whose `name` is a folder name of a training run's output (``out/snapshots``,
    ``out/checkpoint-500``), or a name close to an entry of the folder it would be in (a typo such as
    ``out/snapshotz`` beside ``out/snapshots``, or ``out_sgrd`` beside ``out_sgdr``: a bare name is a Hub repo id
    only for a few legacy models, never for an ensemble); anything else is left to the Hub. Decided before any
    network call. A file, or a path through one (`notes.txt/x`, a repo id in form), is a `SnapshotLoadError`.
    """
    path = Path(path_or_repo_id)
    if path.is_file():
        raise SnapshotLoadError(f"{path} is a file: give a folder (a snapshot folder or a training output_dir)")
    through = file_on_the_way(path)
    if through is not None:
        raise SnapshotLoadError(f"{path}: {through} is a file, not a folder (nor a Hub namespace)")
    if path.exists():
        return
    text = os.fspath(path_or_repo_id)
    close = closest_sibling(path)
    explicit = (
        not isinstance(path_or_repo_id, str)
        or text.startswith(("/", ".", "~"))
        or text.count("/") > 1
        or "\\" in text
        or bool(_OUTPUT_FOLDER_NAME.match(path.name))
    )
    if not explicit and not close:
        return
    hint = f" (did you mean {close}?)" if close else ""
    if not hint and not path.expanduser().parent.exists():
        hint = f" (there is no folder {path.expanduser().parent} either)"
    raise FileNotFoundError(
        f"{text} does not exist{hint}: give an existing snapshot folder or training output_dir (a local path), "
        "or a Hub repo id (namespace/name)"
    )


def read_ahead(folder: Path, names: Iterable[str]) -> None:
    """Read the files once into one small reused buffer: the OS keeps them cached for the coming load."""
    buffer = bytearray(_READ_CHUNK)
    for name in names:
        with open(folder / name, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def root_entries(root: Path, containment: Path | None = None) -> list[Path]:
    """The entries directly in `root` but temporaries, each refused (`SnapshotLoadError` naming it) when it
    resolves out of `containment` (default `root`): what a load or a push may read there stays inside."""
    entries = [path for path in sorted(Path(root).iterdir()) if not path.name.startswith(TMP_PREFIX)]
    return [contained(path, containment or Path(root), path.name) for path in entries]


def root_files(root: Path, containment: Path | None = None) -> list[Path]:
    """Regular files directly in `root` (tokenizer, card, plot, manifest), without temporaries or pickles;
    any entry resolving out of `containment` (default `root`) is refused (`root_entries`)."""
    files = []
    for path in root_entries(root, containment):
        if not path.is_file():
            continue
        if path.name.lower().endswith(PICKLE_SUFFIXES):
            logger.warning("skipping %s: pickle-based files are never loaded or uploaded by hf_sgdr", path.name)
            continue
        files.append(path)
    return files


def auto_model_class(name: str | None) -> type:
    """The transformers `AutoModel*` class called `name` (refusing anything else)."""
    import transformers

    if not isinstance(name, str) or not _AUTO_CLASS.match(name) or not hasattr(transformers, name):
        raise ValueError(
            f"auto_class must name a transformers AutoModel class, e.g. AutoModelForSequenceClassification or "
            f"AutoModelForCausalLM; got {name!r}"
        )
    return getattr(transformers, name)


def load_model(folder: Path, auto_class: str, **kwargs: Any) -> nn.Module:
    """`AutoModel*.from_pretrained` on a verified local folder: safetensors only, no remote code, no network, no
    per-member progress bar."""
    with transformers_bars_silenced():
        return auto_model_class(auto_class).from_pretrained(
            folder, use_safetensors=True, trust_remote_code=False, local_files_only=True, **kwargs
        )


def device_load_options(device: torch.device, model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`from_pretrained` options that load a member's weights straight onto `device`.

    Without them a member is built on the CPU and then moved: one more copy of every weight, from pageable memory
    (on an H200 the move took 1.08 s for five GPT-2 members). transformers does the direct load with a device map,
    which needs accelerate. Nothing is added on the CPU, without accelerate, where the caller places the model
    itself (`device_map`, `tp_plan` in `model_kwargs`), or under DeepSpeed ZeRO-3 (which refuses a device map).
    """
    from transformers.integrations import is_deepspeed_zero3_enabled
    from transformers.utils import is_accelerate_available

    placed_by_caller = "device_map" in model_kwargs or "tp_plan" in model_kwargs
    if device.type == "cpu" or placed_by_caller or not is_accelerate_available() or is_deepspeed_zero3_enabled():
        return {}
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return {"device_map": {"": device}}


def load_state_dict(folder: Path, auto_class: str, **kwargs: Any) -> dict[str, torch.Tensor]:
    """A verified snapshot's weights as a CPU state dict (through `from_pretrained`, so key conversions apply)."""
    return load_model(folder, auto_class, **kwargs).state_dict()
