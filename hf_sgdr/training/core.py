"""Deprecated name of `hf_sgdr.training.cycle_end` (removed in hf_sgdr 0.3): the cycle-end handler and its
neighbours, each imported from where it lives now."""

from .._lazy import moved_names

__getattr__ = moved_names(
    __name__,
    {
        **dict.fromkeys(
            ("EVENT_API", "STATE_NAME", "check_event_api", "training_record", "CycleEndEvent", "CycleEndHandler"),
            "hf_sgdr.training.cycle_end",
        ),
        "RESTART_FROM": "hf_sgdr.training.arguments",
        "SLOW_WRITE_WAIT_S": "hf_sgdr.training.snapshot_recorder",
        "CycleLoss": "hf_sgdr.training.callback",
    },
)
