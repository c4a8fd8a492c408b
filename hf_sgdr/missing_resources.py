"""One-line errors for a model, tokenizer or dataset that cannot be loaded (offline without the cache, no
network, a mistyped name), for the recipes and the `hf-sgdr` command instead of a traceback."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: The variables that make the Hugging Face libraries use the local cache only.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
#: How `datasets` starts the error for a dataset whose config is not in its offline cache.
_DATASETS_CACHE_MISS = "Couldn't find cache for"


class ResourceNotFoundError(FileNotFoundError):
    """A model, tokenizer or dataset found neither in the local Hugging Face cache nor on the Hub."""


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"} for name in OFFLINE_VARIABLES)


def missing_message(what: str, error: BaseException) -> str:
    """What is missing, the loader's first line, and how to get it (offline or not)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = "; ".join(lines[:1] + [line for line in lines[1:] if line.startswith("Available")]) or type(error).__name__
    home = os.environ.get("HF_HOME", "~/.cache/huggingface (HF_HOME unset)")
    if _offline():
        hint = (
            f"offline mode is on and it is not in the cache at HF_HOME={home}: build the offline cache "
            "(README, Quick start) or point HF_HOME at one that holds it"
        )
    else:
        hint = (
            "without network, point HF_HOME at an offline cache and set HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "
            "(README, Quick start; `. .venv/bin/activate` restores them there)"
        )
    return f"cannot load {what} ({first}); {hint}"


@contextlib.contextmanager
def explain_missing(what: str) -> Iterator[None]:
    """Re-raise a failure to find `what` (an `OSError`, as `load_dataset` and `from_pretrained` raise it, or
    the `ValueError` of `datasets` for a config missing from its cache) as a `ResourceNotFoundError` with a
    one-line message that says what is missing."""
    try:
        yield
    except ResourceNotFoundError:
        raise
    except OSError as error:
        raise ResourceNotFoundError(missing_message(what, error)) from error
    except ValueError as error:
        if not str(error).startswith(_DATASETS_CACHE_MISS):
            raise
        raise ResourceNotFoundError(missing_message(what, error)) from error


#: `explain_missing` under its public name, `hf_sgdr.loading`.
loading = explain_missing
