"""Silencing transformers' own progress bars while the ensemble loads its members.

transformers 5 shows a "Loading weights" bar for every `from_pretrained`, whatever the caller's `progress`
says: K members give K bars. The ensemble shows one bar of its own instead. The switch is process-global
(transformers has no other), so it is restored on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def transformers_bars_silenced() -> Iterator[None]:
    """Within the block, transformers (and huggingface_hub) show no progress bars; the previous state comes back."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars
    from transformers.utils import logging as hf_logging

    was_enabled, hub_disabled = hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
        if hub_disabled:
            disable_progress_bars()
