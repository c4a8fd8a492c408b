"""Every member is the model the ensemble will build, checked at load before any weight is read.

`loading.verify_folder` checks that the files are the ones the manifest lists; this checks what they describe:

- `config.json` is a transformers config (valid JSON, types transformers accepts, a built-in `model_type`:
  remote code is off), and the `auto_class` builds the architecture it names;
- the safetensors headers hold exactly the tensors that model expects, with its shapes. A missing tensor would
  be initialised at random by transformers (two loads of one folder would then predict differently); an extra
  or reshaped one means the weights are another model's. Tied weights and the buffers transformers itself
  leaves out of checkpoints are accounted for, by building the model on the meta device (no memory, no
  weights read);
- all members are one model: same architecture, labels and stored tensors with their shapes (else predictions
  could not be combined and would fail late, at predict or in a soup; or a soup would mix tied and untied
  weights).

Errors are `SnapshotLoadError`s naming the member and the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .loading import SnapshotLoadError, auto_model_class, check_safetensors_header

#: The index of a sharded checkpoint (transformers' SAFE_WEIGHTS_INDEX_NAME).
SHARD_INDEX = "model.safetensors.index.json"
#: How many keys an error lists before it says how many more there are.
_SHOWN = 8
#: Buffers older checkpoints hold and transformers drops on load (its own exceptions, `modeling_utils`).
_DROPPED_BUFFERS = (r"(^|\.)position_ids$", r"rotary_emb\.inv_freq")


@dataclass(frozen=True)
class Member:
    """One member to check: its name (for errors), its folder and the files listed for it."""

    label: str
    folder: Path
    files: Iterable[str]


@dataclass(frozen=True)
class _Expected:
    """What a config's model holds: tensor shapes, tied aliases (target -> source), keys allowed to differ."""

    model_class: str
    shapes: dict[str, tuple[int, ...]]
    tied: dict[str, str]
    may_be_missing: re.Pattern[str] | None
    may_be_extra: re.Pattern[str] | None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def read_config(folder: Path, label: str) -> Any:
    """`folder/config.json` as a transformers config (no remote code, no network); `SnapshotLoadError` naming it."""
    from transformers import AutoConfig

    path = f"{label}/config.json"
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, deep nesting, an int past the digit limit
        raise SnapshotLoadError(f"{path} is not valid JSON: {_one_line(error)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise SnapshotLoadError(f"{path} is not a transformers config: a JSON object with a model_type string")
    _check_architecture_names(data.get("architectures"), label)  # on the file: some transformers versions coerce it
    try:
        return AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as error:  # whatever transformers raises on a bad value, named with the file
        raise SnapshotLoadError(
            f"{path} is not a config transformers can use without remote code: {_one_line(error)}"
        ) from None


def _check_architecture_names(names: Any, label: str) -> list[str]:
    """`names` (absent: none) if it is a list of class names, else `SnapshotLoadError` naming the file."""
    names = names or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise SnapshotLoadError(f"{label}/config.json: architectures must be a list of class names; got {names!r}")
    return names


def _architectures(config: Any, label: str) -> list[str]:
    return _check_architecture_names(getattr(config, "architectures", None), label)


def _model_classes(config: Any, auto_class: str) -> list[type]:
    """The model classes `auto_class` has for this config type (none when it cannot build it)."""
    try:
        found = auto_model_class(auto_class)._model_mapping[type(config)]
    except KeyError:
        return []
    return list(found) if isinstance(found, (list, tuple)) else [found]


def _builds_architecture(config: Any, auto_class: str, label: str) -> bool:
    """Whether `auto_class` builds the architecture `config.json` names (any, when it names none)."""
    classes = _model_classes(config, auto_class)
    architectures = _architectures(config, label)
    return bool(classes) and (not architectures or any(c.__name__ in architectures for c in classes))


def auto_class_for(config: Any, supported: Sequence[str], label: str) -> str:
    """The first of the `supported` `AutoModel*` classes that builds the architecture named in `config`."""
    architectures = _architectures(config, label)
    for name in supported:
        if architectures and _builds_architecture(config, name, label):
            return name
    raise ValueError(
        f"{label}/config.json names architectures {architectures}, whose outputs the ensemble cannot combine: "
        f"it supports {', '.join(supported)} models; pass auto_class=... if the architecture is one of those"
    )


def check_auto_class(config: Any, auto_class: str, label: str) -> None:
    """Refuse an `auto_class` that would build another model than the one `config.json` names (a classifier
    loaded as a causal LM gets a randomly initialised LM head)."""
    if not _builds_architecture(config, auto_class, label):
        raise SnapshotLoadError(
            f"{label}/config.json describes {_architectures(config, label) or config.model_type!r}, which "
            f"auto_class {auto_class} does not build: loading it would initialise a head at random"
        )


def _build_expected(model_class: type, config: Any) -> _Expected:
    with torch.device("meta"):
        model = model_class(config)
    buffers = [name for name, _ in model.named_buffers()]
    dropped = [p for p in _DROPPED_BUFFERS if any(re.search(p, name) for name in buffers)]
    missing = set(getattr(model, "_keys_to_ignore_on_load_missing", None) or ())
    extra = set(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ()) | set(dropped)
    return _Expected(
        model_class.__name__,
        {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()},
        dict(getattr(model, "all_tied_weights_keys", None) or {}),
        re.compile("|".join(f"({p})" for p in missing)) if missing else None,
        re.compile("|".join(f"({p})" for p in extra)) if extra else None,
    )


def _expected_for(config: Any, auto_class: str, label: str, cache: dict[str, _Expected]) -> _Expected:
    """The model `auto_class` builds from `config` (once per distinct config: a run's members share one)."""
    classes = _model_classes(config, auto_class)
    architectures = _architectures(config, label)
    model_class = next((c for c in classes if c.__name__ in architectures), classes[0])
    data = config.to_dict()
    data.pop("_name_or_path", None)
    key = f"{model_class.__module__}.{model_class.__name__}:{json.dumps(data, sort_keys=True, default=str)}"
    if key not in cache:
        try:
            cache[key] = _build_expected(model_class, config)
        except Exception as error:  # a value of the wrong type or range: the model cannot be built from it
            raise SnapshotLoadError(
                f"{label}/config.json does not describe a {model_class.__name__} that can be built: {_one_line(error)}"
            ) from None
    return cache[key]


def _read_files(member: Member) -> list[str]:
    """The safetensors files transformers reads: `model.safetensors` when listed (it comes first), else the shards
    the index maps tensors to (a listed shard the index never names is not read, nor are its tensors)."""
    files = list(member.files)
    if "model.safetensors" in files:
        return ["model.safetensors"]
    if SHARD_INDEX not in files:  # an adapter, or a weights file of another name
        return sorted(name for name in files if name.endswith(".safetensors"))
    try:
        return sorted(set(json.loads((member.folder / SHARD_INDEX).read_text(encoding="utf-8"))["weight_map"].values()))
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError) as error:
        raise SnapshotLoadError(
            f"{member.label}/{SHARD_INDEX} is not a valid shard index: {_one_line(error)}"
        ) from None


def stored_shapes(member: Member) -> dict[str, tuple[int, ...]]:
    """The tensors of a member's safetensors files (from their headers: nothing is read but the headers)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name in _read_files(member):
        for key, info in check_safetensors_header(member.folder / name).items():
            if key == "__metadata__":
                continue
            if key in shapes:
                raise SnapshotLoadError(f"{member.label}/{name}: tensor {key!r} is stored in two files")
            shapes[key] = tuple(info["shape"])
    return shapes


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return f"{keys[:_SHOWN]}{more}"


def _check_tensors(member: Member, expected: _Expected, stored: dict[str, tuple[int, ...]]) -> None:
    missing = {
        key
        for key in expected.shapes
        if key not in stored
        and expected.tied.get(key) not in stored
        and not (expected.may_be_missing and expected.may_be_missing.search(key))
    }
    extra = {
        key
        for key in stored
        if key not in expected.shapes and not (expected.may_be_extra and expected.may_be_extra.search(key))
    }
    reshaped = {key for key in stored if key in expected.shapes and stored[key] != expected.shapes[key]}
    problems = []
    if missing:
        problems.append(f"missing {_listing(missing)} (transformers would initialise them at random)")
    if extra:
        problems.append(f"unexpected {_listing(extra)}")
    for key in sorted(reshaped)[:_SHOWN]:
        problems.append(f"{key!r} has shape {list(stored[key])}, the model expects {list(expected.shapes[key])}")
    if problems:
        files = ", ".join(sorted(n for n in member.files if n.endswith(".safetensors")))
        raise SnapshotLoadError(
            f"{member.label}/{files} does not hold the {expected.model_class} that {member.label}/config.json "
            f"describes: {'; '.join(problems)}. Refusing a member whose weights would not all be loaded"
        )


def _identity(config: Any, expected: _Expected) -> dict[str, Any]:
    """What members must share to be combined."""
    return {
        "model_type": config.model_type,
        "architecture": expected.model_class,
        "num_labels": config.num_labels,
        "regression": config.problem_type == "regression",
    }


def _difference(ours: dict[str, Any], theirs: dict[str, Any], name: str) -> str | None:
    for key in ours:
        if ours[key] != theirs[key]:
            return f"{key} {ours[key]!r} (theirs {theirs[key]!r} in {name!r})"
    return None


def _shape_difference(ours: dict[str, tuple[int, ...]], theirs: dict[str, tuple[int, ...]], name: str) -> str | None:
    if ours.keys() != theirs.keys():
        return f"tensors {_listing(ours.keys() ^ theirs.keys())} are in one of it and {name!r} only"
    for key, shape in ours.items():
        if shape != theirs[key]:
            return f"tensor {key!r} has shape {list(shape)} (theirs {list(theirs[key])} in {name!r})"
    return None


def check_full_members(members: Sequence[Member], auto_class: str) -> Any:
    """Check every full-model member (see the module docstring); return the first member's config."""
    first: tuple[str, dict[str, Any], dict[str, tuple[int, ...]], Any] | None = None
    cache: dict[str, _Expected] = {}
    for member in members:
        config = read_config(member.folder, member.label)
        check_auto_class(config, auto_class, member.label)
        expected = _expected_for(config, auto_class, member.label, cache)
        stored = stored_shapes(member)
        _check_tensors(member, expected, stored)
        identity = _identity(config, expected)
        if first is None:
            first = (member.label, identity, stored, config)
            continue
        name, first_identity, first_stored, _ = first
        difference = _difference(identity, first_identity, name) or _shape_difference(stored, first_stored, name)
        if difference is not None:
            raise SnapshotLoadError(
                f"member {member.label!r} is not the same model as {name!r}: {difference}; the members of an ensemble "
                "must share the architecture, the labels and every tensor's shape"
            )
    return None if first is None else first[3]
