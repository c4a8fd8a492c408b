"""Test-session set-up: an offline Hugging Face cache built from the real data in ../shared.

The environment variables must be in place before `huggingface_hub` / `datasets` are imported (they
read them at import), so this runs at conftest import. `HF_SGDR_SHARED` overrides where ../shared is.
Under `-n N` the controlling process imports this first: it builds the cache once and its workers inherit
`HF_SGDR_HF_HOME`, so they reuse it.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.hub import Recorder, recording_endpoint

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_SGDR_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _build_offline_cache() -> None:
    home = os.environ.get("HF_SGDR_HF_HOME")
    if home and (Path(home) / "datasets").is_dir():
        target = Path(home)
    else:
        target = Path(tempfile.mkdtemp(prefix="hf_sgdr_hf_home_"))
        subprocess.run(
            [sys.executable, str(SHARED / "hf-offline" / "build_cache.py"), str(target)],
            check=True,
            capture_output=True,
        )
        os.environ["HF_SGDR_HF_HOME"] = str(target)  # subprocesses of the tests reuse it
    os.environ.update(
        HF_HOME=str(target),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        TOKENIZERS_PARALLELISM="false",
        WANDB_DISABLED="true",
    )


_build_offline_cache()


def _bind_library_log_handlers() -> None:
    """`datasets` and `transformers` give their loggers a `StreamHandler` on the `sys.stderr` of the moment they
    set up logging. Set up inside a test that captures stderr (`capsys`), the handler keeps that test's stream
    and a later test's warning fails on it when closed ("--- Logging error ---" in that test's stderr; a run of
    tests/test_ensemble_cli.py alone failed so). Set up here, at collection, they write to the session's stderr."""
    importlib.import_module("datasets.utils.logging")
    importlib.import_module("transformers.utils.logging").get_logger()


_bind_library_log_handlers()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread for every test: the models here are tiny, and on a shared 2-core machine a
    second thread only adds contention (a 3-10x slowdown measured here). Subprocesses set their own."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (read-only); tests never touch `holdout/`."""
    return DATA


@pytest.fixture
def hub() -> Iterator[tuple[str, Recorder]]:
    """The recording Hub stand-in on 127.0.0.1 (tests/helpers/hub.py): (its URL, what it received)."""
    with recording_endpoint() as endpoint:
        yield endpoint
