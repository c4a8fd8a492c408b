"""PEFT (LoRA) snapshots: one base model, one adapter per snapshot, and the soup of adapters.

A LoRA snapshot holds only its adapter (and, for sequence classification, its own classifier head).
The soup of K LoRA snapshots must equal the soup of the K fine-tuned models, i.e. the base weights plus
the mean of the updates ``B_k A_k s_k``. Averaging the A and B matrices separately does not give that
(mean(B) mean(A) != mean(B A)), so the soup adapter concatenates the members' factors (rank K*r) with
the weights folded into A, which is exact; the heads (`modules_to_save`) are averaged directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..local_paths import is_local_path
from ..snapshot_format.loading import SnapshotLoadError

_SAME_CONFIG_IGNORED = {"base_model_name_or_path", "revision", "inference_mode", "peft_version"}


def _lora_classes() -> tuple[type, type]:
    try:
        from peft.tuners.lora import LoraLayer
        from peft.utils.other import ModulesToSaveWrapper
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("PEFT snapshots need peft: pip install 'hf-sgdr[peft]'") from error
    return LoraLayer, ModulesToSaveWrapper


def _comparable(config: Any) -> dict[str, Any]:
    """The config fields that must agree between soup members (PEFT repeats `modules_to_save` entries on load)."""
    values = {k: v for k, v in config.to_dict().items() if k not in _SAME_CONFIG_IGNORED}
    for key in ("modules_to_save", "target_modules"):
        if isinstance(values.get(key), (list, set, tuple)):
            values[key] = sorted(set(values[key]))
    return values


def _check_soupable(model: Any, adapters: Sequence[str]) -> Any:
    configs = [model.peft_config[name] for name in adapters]
    first = configs[0]
    if type(first).__name__ != "LoraConfig":
        raise ValueError(f"adapter soups support LoRA adapters only; {adapters[0]!r} is a {type(first).__name__}")
    if getattr(first, "use_dora", False) or getattr(first, "lora_bias", False):
        raise ValueError("adapter soups do not support DoRA or lora_bias (their updates are not linear in A and B)")
    if first.rank_pattern or first.alpha_pattern:
        raise ValueError("adapter soups need one rank and alpha for every module (rank_pattern/alpha_pattern are set)")
    reference = _comparable(first)
    for name, config in zip(adapters[1:], configs[1:], strict=True):
        other = _comparable(config)
        differing = sorted(k for k in reference.keys() | other.keys() if reference.get(k) != other.get(k))
        if differing:
            raise ValueError(f"adapter {name!r} differs from {adapters[0]!r} in {differing}; a soup needs one config")
    return first


@torch.no_grad()
def add_averaged_adapter(model: Any, adapters: Sequence[str], weights: Sequence[float], new_name: str) -> None:
    """Add adapter `new_name` to PEFT `model`: update = sum_k w_k * update_k (exact), heads = sum_k w_k * head_k."""
    LoraLayer, ModulesToSaveWrapper = _lora_classes()
    if len(adapters) != len(weights) or not adapters:
        raise ValueError(f"need one weight per adapter; got {len(adapters)} adapters and {len(weights)} weights")
    first = _check_soupable(model, adapters)
    rank = first.r * len(adapters)
    config = dataclasses.replace(first, r=rank, lora_alpha=rank, use_rslora=False, inference_mode=True)
    model.add_adapter(new_name, config)
    for module in model.modules():
        if isinstance(module, LoraLayer) and new_name in module.lora_A:
            a = torch.cat(
                [module.lora_A[n].weight * (w * module.scaling[n]) for n, w in zip(adapters, weights, strict=True)], 0
            )
            module.lora_A[new_name].weight.copy_(a)
            module.lora_B[new_name].weight.copy_(torch.cat([module.lora_B[n].weight for n in adapters], 1))
        elif isinstance(module, LoraLayer) and new_name in module.lora_embedding_A:
            a = torch.cat(
                [module.lora_embedding_A[n] * (w * module.scaling[n]) for n, w in zip(adapters, weights, strict=True)],
                0,
            )
            module.lora_embedding_A[new_name].copy_(a)
            module.lora_embedding_B[new_name].copy_(torch.cat([module.lora_embedding_B[n] for n in adapters], 1))
        elif isinstance(module, LoraLayer) and any(
            n in module.lora_A or n in module.lora_embedding_A for n in adapters
        ):
            raise ValueError(f"adapter soups support LoRA on Linear and Embedding layers; got {type(module).__name__}")
        elif isinstance(module, ModulesToSaveWrapper) and new_name in module.modules_to_save:
            _average_module(module.modules_to_save[new_name], [module.modules_to_save[n] for n in adapters], weights)


def _average_module(target: nn.Module, sources: Sequence[nn.Module], weights: Sequence[float]) -> None:
    states = [source.state_dict() for source in sources]
    for name, tensor in target.state_dict(keep_vars=True).items():
        parts = [state[name] for state in states]
        if tensor.is_floating_point():
            tensor.copy_(sum(w * part for w, part in zip(weights, parts, strict=True)))
        else:
            tensor.copy_(parts[0])


def head_size(adapter_file: Path, modules_to_save: Sequence[str] | None) -> int | None:
    """Output size of the first `modules_to_save` head in an adapter file (its num_labels), from the header only."""
    from safetensors import safe_open

    if not modules_to_save:
        return None
    with safe_open(str(adapter_file), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
            parts = key.split(".")
            if parts[-1] == "weight" and any(m in parts for m in modules_to_save):
                return int(handle.get_slice(key).get_shape()[0])
    return None


def save_adapter(model: Any, adapter: str, folder: Path) -> None:
    """Write adapter `adapter` of PEFT `model` (config + safetensors) directly into `folder`."""
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        model.save_pretrained(scratch, selected_adapters=[adapter], safe_serialization=True)
        written = Path(scratch) / adapter if adapter != "default" else Path(scratch)
        for path in written.iterdir():
            shutil.move(str(path), folder / path.name)


def load_adapter_model(
    folders: Sequence[Path], names: Sequence[str], auto_class: str, base_model: str | None, **model_kwargs: Any
) -> Any:
    """The base model, loaded once, with every snapshot's adapter loaded under the snapshot's name.

    For sequence classification the number of labels comes from the adapter's own head unless given.
    """
    from peft import PeftConfig, PeftModel

    from ..quiet import transformers_bars_silenced
    from ..snapshot_format.loading import auto_model_class

    with _naming(names[0]):
        config = PeftConfig.from_pretrained(str(folders[0]))
    base_id = base_model or config.base_model_name_or_path
    if not base_id:
        raise ValueError(
            "PEFT snapshots need a base model: the manifest and the adapter config name none; pass base_model"
        )
    if is_local_path(base_id) and not Path(base_id).exists():  # trained elsewhere, or published as `./<name>`
        raise ValueError(
            f"the snapshots are adapters on a local base model, {base_id}, and there is no such folder here: pass "
            "base_model= (hf-sgdr evaluate --base_model) with your copy of it or its Hub id"
        )
    if auto_class == "AutoModelForSequenceClassification" and "num_labels" not in model_kwargs:
        num_labels = head_size(folders[0] / "adapter_model.safetensors", getattr(config, "modules_to_save", None))
        if num_labels is not None:
            model_kwargs["num_labels"] = num_labels
    base = auto_model_class(auto_class).from_pretrained(
        base_id, use_safetensors=True, trust_remote_code=False, **model_kwargs
    )
    with transformers_bars_silenced():  # one bar per adapter otherwise
        with _naming(names[0]):
            model = PeftModel.from_pretrained(base, str(folders[0]), adapter_name=names[0])
        for folder, name in zip(folders[1:], names[1:], strict=True):
            with _naming(name):
                model.load_adapter(str(folder), adapter_name=name)
    for folder, name in zip(folders, names, strict=True):
        check_adapter_tensors(model, folder, name)
    return model


@contextlib.contextmanager
def _naming(name: str) -> Iterator[None]:
    """Turn whatever PEFT raises on a snapshot's adapter files into a `SnapshotLoadError` naming the snapshot."""
    try:
        yield
    except Exception as error:
        text = " ".join(str(error).split())[:300]
        raise SnapshotLoadError(
            f"{name}/adapter_config.json or adapter_model.safetensors cannot be loaded: {type(error).__name__}: {text}"
        ) from None


def check_adapter_tensors(model: Any, folder: Path, name: str) -> None:
    """Refuse adapter `name` unless its file held exactly the tensors (and shapes) its config gives the model: PEFT
    leaves a missing one at its initial value (LoRA's A random) and ignores an extra one, with a warning only."""
    from peft import get_peft_model_state_dict

    from ..snapshot_format.members import Member, stored_shapes

    expected = {key: tuple(t.shape) for key, t in get_peft_model_state_dict(model, adapter_name=name).items()}
    stored = stored_shapes(Member(name, folder, ["adapter_model.safetensors"]))
    missing, extra = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
    problems = [f"missing {missing[:8]}"] if missing else []
    problems += [f"unexpected {extra[:8]}"] if extra else []
    for key, shape in expected.items():
        if key in stored and stored[key] != shape:
            problems.append(f"{key!r} has shape {list(stored[key])}, expected {list(shape)}")
    if problems:
        raise SnapshotLoadError(
            f"{name}/adapter_model.safetensors does not hold the adapter {name}/adapter_config.json describes: "
            f"{'; '.join(problems[:8])}. Refusing a member whose weights would not all be loaded"
        )
