"""Deprecated name of `hf_sgdr.missing_resources` (removed in hf_sgdr 0.3); `hf_sgdr.loading` stays."""

from ._lazy import moved_names

__getattr__ = moved_names(
    __name__,
    dict.fromkeys(
        ("OFFLINE_VARIABLES", "ResourceNotFoundError", "missing_message", "loading"), "hf_sgdr.missing_resources"
    ),
)
