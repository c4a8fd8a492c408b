"""What a snapshot folder holds, told from the model: full weights or a PEFT adapter, which `Auto*`
class loads it, from which base model, for which task. This fills the manifest's header so that
the ensemble side can load a snapshot without being told how it was trained.
"""

from __future__ import annotations

from typing import Any

import torch

from .manifest import ModelDescription

#: Auto classes tried first (in this order) when a model class appears under several of them.
_PREFERRED_AUTO_CLASSES = (
    "AutoModelForSequenceClassification",
    "AutoModelForCausalLM",
    "AutoModelForMaskedLM",
    "AutoModelForTokenClassification",
    "AutoModelForQuestionAnswering",
    "AutoModelForSeq2SeqLM",
    "AutoModelForMultipleChoice",
    "AutoModelForImageClassification",
)
#: Tried last: they also list classes that have a more specific home.
_FALLBACK_AUTO_CLASSES = ("AutoModelForPreTraining", "AutoModel")

#: Pipeline task of an auto class, where there is one obvious task.
AUTO_CLASS_TASKS = {
    "AutoModelForSequenceClassification": "text-classification",
    "AutoModelForCausalLM": "text-generation",
    "AutoModelForMaskedLM": "fill-mask",
    "AutoModelForTokenClassification": "token-classification",
    "AutoModelForQuestionAnswering": "question-answering",
    "AutoModelForSeq2SeqLM": "text2text-generation",
    "AutoModelForImageClassification": "image-classification",
}


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The user's model behind DDP / FSDP / `torch.compile` wrappers (what `save_pretrained` must be called on).

    Accelerate keeps the compiled wrapper by default; its state dict names every entry `_orig_mod.*`. Without
    accelerate installed (the ensemble side needs only the core install), only torch's own wrappers can occur.
    """
    try:
        from accelerate.utils import extract_model_from_parallel
    except ImportError:
        while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        return without_compile(model)
    return extract_model_from_parallel(model, keep_torch_compile=False)


def without_compile(model: torch.nn.Module) -> torch.nn.Module:
    """`model` without a top-level `torch.compile` wrapper (other wrappers such as DDP / FSDP kept)."""
    return model._orig_mod if isinstance(model, torch._dynamo.eval_frame.OptimizedModule) else model


def peft_model_class() -> type | None:
    """`peft.PeftModel`, or `None` when PEFT is not installed."""
    try:
        from peft import PeftModel
    except ImportError:
        return None
    return PeftModel


def is_peft_model(model: torch.nn.Module) -> bool:
    """True for a `peft.PeftModel` (its `save_pretrained` writes only the adapter)."""
    cls = peft_model_class()
    return cls is not None and isinstance(model, cls)


def auto_class_name(model: torch.nn.Module) -> str | None:
    """The `transformers` Auto class whose mapping lists this model's class for its `model_type`."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        return None
    from transformers.models.auto import modeling_auto

    class_name = type(model).__name__
    others = sorted(
        name
        for name in dir(modeling_auto)
        if name.startswith("AutoModel") and name not in _PREFERRED_AUTO_CLASSES + _FALLBACK_AUTO_CLASSES
    )
    for name in (*_PREFERRED_AUTO_CLASSES, *others, *_FALLBACK_AUTO_CLASSES):
        mapping = getattr(getattr(modeling_auto, name, None), "_model_mapping", None)
        names = getattr(mapping, "_model_mapping", {}).get(model_type)
        if names == class_name or (isinstance(names, (tuple, list)) and class_name in names):
            return name
    return None


def describe_model(model: torch.nn.Module, task: str | None = None) -> ModelDescription:
    """Snapshot type, Auto class, base model id and task of `model` (wrappers removed).

    `task` overrides the task derived from the Auto class.
    """
    model = unwrap_model(model)
    if is_peft_model(model):
        base = model.get_base_model()
        config = model.peft_config[model.active_adapter]
        base_model = getattr(config, "base_model_name_or_path", None) or _name_or_path(base)
        auto_class = auto_class_name(base)
        return ModelDescription("peft_adapter", auto_class, base_model, task or AUTO_CLASS_TASKS.get(auto_class or ""))
    auto_class = auto_class_name(model)
    kind = "peft_adapter" if getattr(model, "_hf_peft_config_loaded", False) else "full_model"
    return ModelDescription(kind, auto_class, _name_or_path(model), task or AUTO_CLASS_TASKS.get(auto_class or ""))


def _name_or_path(model: Any) -> str | None:
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or getattr(model, "name_or_path", None)
    return str(name) if name else None
