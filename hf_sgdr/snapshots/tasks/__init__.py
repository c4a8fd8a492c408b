"""Task kinds: one object per kind of model outputs (`base.TaskKind`), found by name in the torch-free
`registry`; a kind's torch part (`class_scores`, `regression`, `causal_lm`) is imported on first use."""

from .registry import KindFacts, kind_facts, kind_names, register_kind, task_kind

__all__ = ["KindFacts", "kind_facts", "kind_names", "register_kind", "task_kind"]
