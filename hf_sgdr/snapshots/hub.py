"""The Hub side: where an ensemble comes from (local folder or repo) and how a snapshot folder is pushed.

Downloads fetch the manifest first and then only what it lists (plus tokenizer files, card and plot),
so a pickle in the repo is never even downloaded. A push verifies the folder, then creates the repo and
uploads everything in one commit, from where the files lie (no copy); the manifest goes up with local paths named
by their last part (`public_manifest`). The token is resolved by
`huggingface_hub` (argument, `HF_TOKEN`, stored login) and is never logged or written anywhere: both Hub
calls run under `redaction.redacting`, so an endpoint echoing it in an error gets it into no log or exception.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..atomic import json_text
from ..local_paths import without_local_paths
from ..redaction import redacting
from ..snapshot_format.digests import mismatched_files
from ..snapshot_format.layout import CARD_NAME, PLOT_NAME
from ..snapshot_format.loading import (
    PICKLE_SUFFIXES,
    SnapshotLoadError,
    check_local_source,
    pickle_refusal,
    root_files,
    verify_folder,
)
from ..snapshot_format.manifest import MANIFEST_NAME, SnapshotManifest

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
#: Root files fetched besides the manifest-listed snapshots: tokenizer/processor files, the card and the plot.
ROOT_PATTERNS = [
    MANIFEST_NAME,
    CARD_NAME,
    PLOT_NAME,
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "preprocessor_config.json",
]


def _cache_repo_folder(folder: Path) -> Path:
    """The repo folder of a Hugging Face cache snapshot (its files link into `blobs/` there), else `folder`."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent
    return folder


def resolve_source(
    path_or_repo_id: str | os.PathLike[str],
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    force_download: bool = False,
) -> tuple[Path, Path]:
    """(snapshot folder, folder no path may escape) for a local folder, a training output folder, or a repo id."""
    check_local_source(path_or_repo_id)
    path = Path(path_or_repo_id)
    if path.exists():
        for name, value in (("revision", revision is not None), ("force_download", force_download)):
            if value:
                raise ValueError(f"{name} applies to Hub repos; {path} is a local folder")
        if not (path / MANIFEST_NAME).is_file() and (path / "snapshots" / MANIFEST_NAME).is_file():
            path = path / "snapshots"
        return path, path
    if not is_repo_id(path_or_repo_id):
        raise FileNotFoundError(f"{path_or_repo_id} is neither an existing folder nor a Hub repo id (namespace/name)")
    folder = download(
        str(path_or_repo_id),
        revision,
        token=token,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        endpoint=endpoint,
        force_download=force_download,
    )
    return folder, _cache_repo_folder(folder)


def is_repo_id(name: str | os.PathLike[str]) -> bool:
    """Whether `name` has the shape of a Hub repo id (`name` or `namespace/name`)."""
    return _REPO_ID.match(str(name)) is not None


def download_file(repo_id: str, filename: str, **options: Any) -> Path:
    """One file of a Hub repo, alone (`options`: `hf_hub_download`'s revision, token, cache and offline arguments):
    the manifest a load fetches first, or a snapshot's `config.json` a command reads before the weights."""
    from huggingface_hub import hf_hub_download

    with redacting(options.get("token")):
        return Path(hf_hub_download(repo_id, filename, **options))


def download_manifest(repo_id: str, **options: Any) -> SnapshotManifest:
    """The manifest of a Hub repo, alone (`options` as `download_file`'s)."""
    return SnapshotManifest.load(download_file(repo_id, MANIFEST_NAME, **options).parent)


def download(
    repo_id: str,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    force_download: bool = False,
) -> Path:
    """Fetch the manifest, refuse listed pickles, then fetch the listed files (cache and HF_HUB_OFFLINE honoured;
    `force_download` fetches them again although the cache holds them, e.g. after a corrupt-file error)."""
    from huggingface_hub import snapshot_download

    common = dict(
        revision=revision,
        token=token,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        endpoint=endpoint,
        force_download=force_download,
    )
    with redacting(token):
        manifest = download_manifest(repo_id, **common)
        wanted = list(ROOT_PATTERNS)
        for record in manifest.snapshots:
            for name in record.files:
                if name.lower().endswith(PICKLE_SUFFIXES):
                    raise pickle_refusal(f"{repo_id}/{record.name}/{name}")
                wanted.append(f"{record.name}/{name}")
        return Path(snapshot_download(repo_id, allow_patterns=wanted, **common))


def public_manifest(manifest: SnapshotManifest) -> tuple[SnapshotManifest, list[str]]:
    """`manifest` as published: the local paths in its base model and training facts (a local dataset folder, a
    data file, a local base model, also given relative) named by their last part (`local_paths.public_text`); and
    the keys changed."""
    base_model, hidden = without_local_paths(manifest.base_model, "base_model", "base_model")
    training, more = without_local_paths(manifest.training, "training")
    return replace(manifest, base_model=base_model, training=training), hidden + more


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    manifest: SnapshotManifest | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    create_pr: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    extra_files: Mapping[str, bytes] | None = None,
) -> Any:
    """Upload a verified snapshot folder to `repo_id` in one commit, in place; `extra_files` (e.g. a fresh card)
    override root files of the same name.

    The one push path (`hf-sgdr push` and `SnapshotEnsemble.push_to_hub`). Uploaded: the root files
    (manifest, tokenizer, card, plot; no pickles, no temporaries) and each snapshot's manifest-listed files,
    read where they are. `manifest` (default: the folder's own manifest.json, uploaded as it is) is the one
    to publish instead, e.g. a subset of the snapshots: each of its records must equal the folder's, so the
    provenance it carries (library versions, metrics) is the training run's. Either goes up as `public_manifest`
    makes it: no local path of the machine that trained or pushes. Each file is hashed once, by
    `huggingface_hub` for the upload, and checked against the manifest before anything is sent; a file the manifest
    records in pieces (larger than `digests.PIECE_SIZE`) is first checked against them, hashed in parallel.
    Returns huggingface_hub's `CommitInfo`.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    root = Path(folder)
    names = None if manifest is None else [record.name for record in manifest.snapshots]
    containment = _cache_repo_folder(root)
    on_disk, records = verify_folder(root, names, containment, checksums=False)
    if manifest is not None:
        for record in manifest.snapshots:
            if record != on_disk.snapshot(record.name):
                raise SnapshotLoadError(f"{record.name}: the manifest to push differs from {root / MANIFEST_NAME}")
    extra = dict(extra_files or {})
    published, hidden = public_manifest(on_disk if manifest is None else manifest)
    if hidden:
        logger.info("the pushed manifest names local paths by their last part: %s", ", ".join(hidden))
    if (manifest is not None or hidden) and MANIFEST_NAME not in extra:
        extra[MANIFEST_NAME] = json_text(published.to_dict()).encode("utf-8")
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=content) for name, content in extra.items()]
    for path in root_files(root, containment):
        if path.name not in extra:
            operations.append(CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path)))
    pieced = {
        f"{record.name}/{name}": (root / record.name / name, expected)
        for record in records
        for name, expected in record.files.items()
        if expected.sha256 is None
    }
    corrupt = mismatched_files(pieced)
    for record in records:
        for name, expected in record.files.items():
            operation = CommitOperationAdd(f"{record.name}/{name}", str(root / record.name / name))
            whole_differs = expected.sha256 is not None and operation.upload_info.sha256.hex() != expected.sha256
            if whole_differs or f"{record.name}/{name}" in corrupt:
                raise SnapshotLoadError(f"{record.name}/{name} is corrupt: its SHA-256 differs from manifest.json")
            operations.append(operation)
    message = commit_message or f"Upload {on_disk.snapshot_type} snapshot ensemble ({len(records)} snapshots)"
    with redacting(token):
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=message,
            commit_description=commit_description,
            create_pr=create_pr,
            revision=revision,
        )
        logger.info("pushed %d files to %s: %s", len(operations), repo_id, getattr(info, "commit_url", info))
    return info
