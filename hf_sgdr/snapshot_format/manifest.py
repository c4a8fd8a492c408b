"""The snapshot folder's manifest: what was saved at each cycle end, and how to check it.

One folder holds a whole ensemble and can go to the Hub unchanged (names in `layout`): `manifest.json`
(this module: kind, schedule, library versions, one record per snapshot), the tokenizer saved once, an
optional lr plot, and one folder per snapshot that `AutoModel*.from_pretrained` (or PEFT) loads.

The training side writes it (`hf_sgdr.training`), the ensemble side reads and re-writes it
(`hf_sgdr.snapshots`); both build its header with `new_manifest`. Parsing is strict because manifests
come from other people's repos: unknown kinds, names that could escape the folder, wrong types and
absurd sizes are refused with an error that names the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .._version import __version__
from ..atomic import atomic_write_json
from ..schedule import SGDRSchedule
from .layout import MANIFEST_NAME

FORMAT_NAME = "hf_sgdr.snapshot_ensemble"
#: The newest format this version reads. 2 adds piece digests (`FileRecord.piece_sha256`); a manifest is written
#: as format 1 while none of its files needs them, so that older hf_sgdr versions still read it.
FORMAT_VERSION = 2
#: The accepted range of `FileRecord.piece_size` (bytes).
MIN_PIECE_SIZE, MAX_PIECE_SIZE = 1 << 16, 1 << 30
#: What each snapshot folder holds.
SNAPSHOT_TYPES = ("full_model", "peft_adapter")
#: A manifest larger than this is refused before parsing.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_SNAPSHOTS = 10_000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ManifestError(ValueError):
    """A manifest that is malformed, unsupported or unsafe."""


def check_relative_name(value: Any, what: str) -> str:
    """A safe relative path: '/'-separated parts of letters, digits, '.', '_', '-', none '.' or '..'."""
    if not isinstance(value, str) or not value or len(value) > 512:
        raise ManifestError(f"{what} must be a non-empty relative path; got {value!r}")
    parts = value.split("/")
    if value.startswith("/") or any(p in ("", ".", "..") or not _NAME.match(p) for p in parts):
        raise ManifestError(f"{what} {value!r} is not a safe relative path inside the snapshot folder")
    return value


def _require(data: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str, optional: bool = False) -> Any:
    if key not in data or data[key] is None:
        if optional:
            return None
        raise ManifestError(f"{where}.{key} is missing")
    value = data[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ManifestError(f"{where}.{key} has the wrong type (bool)")
    if not isinstance(value, kinds):
        raise ManifestError(f"{where}.{key} has the wrong type {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ManifestError(f"{where}.{key} is not finite")
    return value


def _metrics(value: Any, where: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError(f"{where} must be an object of numbers")
    out = {}
    for key, number in value.items():
        if not isinstance(key, str) or isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ManifestError(f"{where}[{key!r}] must be a number")
        out[key] = float(number)
    return out


@dataclass
class FileRecord:
    """Checksum and size of one file of a snapshot: the SHA-256 of the whole file, or (format 2, files larger
    than one piece) the SHA-256 of each consecutive `piece_size`-byte piece, which can be checked in parallel."""

    sha256: str | None
    size: int
    piece_size: int | None = None
    piece_sha256: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, without the fields it does not use."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> FileRecord:
        if not isinstance(data, dict):
            raise ManifestError(f"{where} must be an object")
        size = _require(data, "size", int, where)
        if size < 0:
            raise ManifestError(f"{where}.size is negative")
        if "piece_sha256" not in data and "piece_size" not in data:
            return cls(_hex_digest(_require(data, "sha256", str, where), f"{where}.sha256"), size)
        if data.get("sha256") is not None:
            raise ManifestError(f"{where} has both sha256 and piece_sha256: give one")
        piece_size = _require(data, "piece_size", int, where)
        if not MIN_PIECE_SIZE <= piece_size <= MAX_PIECE_SIZE:
            raise ManifestError(
                f"{where}.piece_size is {piece_size}; accepted: {MIN_PIECE_SIZE} to {MAX_PIECE_SIZE} bytes"
            )
        pieces = _require(data, "piece_sha256", list, where)
        expected = max(1, -(-size // piece_size))
        if len(pieces) != expected:
            raise ManifestError(
                f"{where}.piece_sha256 has {len(pieces)} digests; a {size}-byte file in {piece_size}-byte pieces has "
                f"{expected}"
            )
        digests = [_hex_digest(digest, f"{where}.piece_sha256[{i}]") for i, digest in enumerate(pieces)]
        return cls(None, size, piece_size, digests)


def _hex_digest(value: Any, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ManifestError(f"{what} is not a hex SHA-256")
    return value


@dataclass
class SnapshotRecord:
    """One snapshot: the weights after the last (lowest-lr) step of cycle `cycle`."""

    name: str
    cycle: int
    global_step: int
    scheduler_step: int
    epoch: float | None = None
    lr: list[float] = field(default_factory=list)
    train_loss: float | None = None
    eval_metrics: dict[str, float] | None = None
    averaged: bool = False
    num_averaged: int | None = None
    files: dict[str, FileRecord] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, index: int) -> SnapshotRecord:
        where = f"snapshots[{index}]"
        if not isinstance(data, dict):
            raise ManifestError(f"{where} must be an object")
        files_raw = _require(data, "files", dict, where)
        files = {}
        for name, record in files_raw.items():
            check_relative_name(name, f"{where}.files name")
            files[name] = FileRecord.from_dict(record, f"{where}.files[{name!r}]")
        lr = data.get("lr", [])
        if not isinstance(lr, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in lr):
            raise ManifestError(f"{where}.lr must be a list of numbers")
        epoch = _require(data, "epoch", (int, float), where, optional=True)
        loss = _require(data, "train_loss", (int, float), where, optional=True)
        return cls(
            name=check_relative_name(_require(data, "name", str, where), f"{where}.name"),
            cycle=_require(data, "cycle", int, where),
            global_step=_require(data, "global_step", int, where),
            scheduler_step=_require(data, "scheduler_step", int, where),
            epoch=None if epoch is None else float(epoch),
            lr=[float(x) for x in lr],
            train_loss=None if loss is None else float(loss),
            eval_metrics=_metrics(data.get("eval_metrics"), f"{where}.eval_metrics"),
            averaged=bool(_require(data, "averaged", bool, where, optional=True) or False),
            num_averaged=_require(data, "num_averaged", int, where, optional=True),
            files=files,
        )


@dataclass
class SnapshotManifest:
    """The whole ensemble: what kind of snapshots, how they were trained, and the list of them."""

    snapshot_type: str = "full_model"
    auto_class: str | None = None
    base_model: str | None = None
    task: str | None = None
    schedule: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    snapshots: list[SnapshotRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the format name and the oldest version that reads it (1 without piece digests)."""
        data = asdict(self)
        for raw, record in zip(data["snapshots"], self.snapshots, strict=True):
            raw["files"] = {name: file.to_dict() for name, file in record.files.items()}
        pieces = any(file.piece_sha256 is not None for record in self.snapshots for file in record.files.values())
        return {"format": FORMAT_NAME, "format_version": 2 if pieces else 1, **data}

    def save(self, folder: str | Path) -> Path:
        """Write `folder/manifest.json` atomically."""
        return atomic_write_json(Path(folder) / MANIFEST_NAME, self.to_dict())

    def snapshot(self, name: str) -> SnapshotRecord:
        """The record called `name`, or `KeyError` listing what exists."""
        for record in self.snapshots:
            if record.name == name:
                return record
        raise KeyError(f"no snapshot {name!r}; the manifest lists {[r.name for r in self.snapshots]}")

    @classmethod
    def from_dict(cls, data: Any) -> SnapshotManifest:
        if not isinstance(data, dict):
            raise ManifestError("the manifest must be a JSON object")
        if data.get("format") != FORMAT_NAME:
            raise ManifestError(f"not an hf_sgdr snapshot manifest (format={data.get('format')!r})")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise ManifestError(
                f"unsupported manifest format_version {version!r} (this hf_sgdr reads 1..{FORMAT_VERSION})"
            )
        snapshot_type = _require(data, "snapshot_type", str, "manifest")
        if snapshot_type not in SNAPSHOT_TYPES:
            raise ManifestError(f"unknown snapshot_type {snapshot_type!r}; accepted: {', '.join(SNAPSHOT_TYPES)}")
        raw_snapshots = _require(data, "snapshots", list, "manifest")
        if len(raw_snapshots) > MAX_SNAPSHOTS:
            raise ManifestError(f"manifest lists {len(raw_snapshots)} snapshots (at most {MAX_SNAPSHOTS})")
        snapshots = [SnapshotRecord.from_dict(item, i) for i, item in enumerate(raw_snapshots)]
        names = [s.name for s in snapshots]
        if len(set(names)) != len(names):
            raise ManifestError("manifest lists the same snapshot name twice")
        versions = data.get("library_versions") or {}
        if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
            raise ManifestError("manifest.library_versions must map names to version strings")
        for key in ("schedule", "training"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise ManifestError(f"manifest.{key} must be an object")
        if data.get("schedule"):  # the card and plot rebuild the schedule from it: check it now, not there
            try:
                SGDRSchedule.from_dict(data["schedule"])
            except (TypeError, ValueError, OverflowError) as error:
                raise ManifestError(f"manifest.schedule is not a valid SGDR schedule: {error}") from None
        return cls(
            snapshot_type=snapshot_type,
            auto_class=_require(data, "auto_class", str, "manifest", optional=True),
            base_model=_require(data, "base_model", str, "manifest", optional=True),
            task=_require(data, "task", str, "manifest", optional=True),
            schedule=data.get("schedule"),
            training=data.get("training") or {},
            library_versions=dict(versions),
            snapshots=snapshots,
        )

    @classmethod
    def load(cls, folder: str | Path) -> SnapshotManifest:
        """Read and validate `folder/manifest.json`; errors name the file."""
        path = Path(folder) / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {MANIFEST_NAME} in {folder}: not an hf_sgdr snapshot folder")
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:  # deep nesting: RecursionError
            raise ManifestError(f"{path} is not valid JSON: {error}") from None
        except ManifestError as error:  # NaN / Infinity, refused by `_refuse_constant`
            raise ManifestError(f"{path}: {error}") from None
        try:
            return cls.from_dict(data)
        except ManifestError as error:
            raise ManifestError(f"{path}: {error}") from None


@dataclass(frozen=True)
class ModelDescription:
    """The manifest header fields that depend on the model (see `model_description.describe_model`)."""

    snapshot_type: str
    auto_class: str | None
    base_model: str | None
    task: str | None


#: The libraries whose versions a manifest records, when installed.
RECORDED_LIBRARIES = ("torch", "transformers", "accelerate", "peft", "safetensors", "huggingface_hub")


def library_versions() -> dict[str, str]:
    """This process's versions of the libraries a snapshot's loader cares about (those installed)."""
    versions = {"hf_sgdr": __version__}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def new_manifest(
    model: ModelDescription,
    *,
    schedule: dict[str, Any] | None,
    training: dict[str, Any],
    snapshots: Sequence[SnapshotRecord] = (),
    trained_with: dict[str, str] | None = None,
) -> SnapshotManifest:
    """The manifest of a snapshot folder: the model's header, the schedule, the training facts and the
    records. `trained_with` (library versions) keeps the provenance of snapshots trained elsewhere (a
    loaded ensemble); by default this process's versions are recorded."""
    return SnapshotManifest(
        snapshot_type=model.snapshot_type,
        auto_class=model.auto_class,
        base_model=model.base_model,
        task=model.task,
        schedule=schedule,
        training=dict(training),
        library_versions=dict(trained_with if trained_with is not None else library_versions()),
        snapshots=list(snapshots),
    )


def _refuse_constant(name: str) -> float:
    raise ManifestError(f"non-finite number {name} in manifest")


#: Key of the manifest's `training` section that records the training data (see `TrainData`).
TRAIN_DATA_KEY = "train_data"
#: The same record for a language model's training blocks: its numbers are blocks (`hf_sgdr.data.lm_blocks` of the
#: split's texts at the run's `block_size`), not rows. A key of its own, so that a version reading only
#: `train_data` does not take block numbers for row numbers.
TRAIN_BLOCKS_KEY = "train_blocks"
#: Name of the held-out slice of the training split, as reports call it.
HELD_OUT_NAME = "train_heldout"


@dataclass(frozen=True)
class TrainData:
    """Which data a run trained on: the first `rows_used` rows of `split` (of the `datasets` id
    `dataset_name` / `dataset_config_name`, or of the local `data_file`) less the `held_out` rows,
    kept out of training to choose soups, selections and weights on."""

    split: str
    rows_used: int
    held_out: tuple[int, ...] = ()
    dataset_name: str | None = None
    dataset_config_name: str | None = None
    data_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `training.train_data` value."""
        return {**asdict(self), "held_out": list(self.held_out)}

    @classmethod
    def from_training(cls, training: dict[str, Any], key: str = TRAIN_DATA_KEY) -> TrainData | None:
        """The record under `key` (`TRAIN_DATA_KEY`, or `TRAIN_BLOCKS_KEY` for blocks) of a manifest's `training`
        section (`None` when the run recorded none); strict, as the manifest may come from someone else's repo."""
        data = training.get(key)
        if data is None:
            return None
        where = f"training.{key}"
        if not isinstance(data, dict):
            raise ManifestError(f"{where} must be an object; got {type(data).__name__}")
        rows_used = _require(data, "rows_used", int, where)
        held_out = _require(data, "held_out", list, where)
        if isinstance(rows_used, bool) or rows_used < 0:
            raise ManifestError(f"{where}.rows_used must be an integer >= 0; got {rows_used!r}")
        unit = "block" if key == TRAIN_BLOCKS_KEY else "row"
        if not all(isinstance(r, int) and not isinstance(r, bool) and 0 <= r < rows_used for r in held_out):
            raise ManifestError(f"{where}.held_out must list {unit} numbers in [0, rows_used={rows_used})")
        if len(set(held_out)) != len(held_out):  # a repeated number would be scored again and again
            raise ManifestError(f"{where}.held_out must list each {unit} number once")
        return cls(
            split=_require(data, "split", str, where),
            rows_used=rows_used,
            held_out=tuple(held_out),
            dataset_name=_require(data, "dataset_name", str, where, optional=True),
            dataset_config_name=_require(data, "dataset_config_name", str, where, optional=True),
            data_file=_require(data, "data_file", str, where, optional=True),
        )

    def trained_rows_in(self, rows: range) -> int:
        """How many of `rows` (row numbers of `split`) the run trained on."""
        inside = len(range(max(rows.start, 0), min(rows.stop, self.rows_used)))
        return inside - sum(1 for row in self.held_out if row in rows)
