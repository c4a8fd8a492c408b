"""Deprecated name of `hf_sgdr.training.loop_checkpoints` (removed in hf_sgdr 0.3)."""

from .._lazy import moved_names

__getattr__ = moved_names(
    __name__,
    dict.fromkeys(
        (
            "CHECKPOINT_PREFIX",
            "LATEST",
            "checkpoint_folder",
            "save_checkpoint",
            "latest_checkpoint",
            "find_checkpoint",
            "ResumePoint",
            "epoch_batches",
        ),
        "hf_sgdr.training.loop_checkpoints",
    ),
)
