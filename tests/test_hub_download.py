"""Loading an ensemble from the Hub with `huggingface_hub`'s real client against a local stand-in endpoint (there
is no Hub here): a file damaged in the cache is refused by name with the way out, and `force_download` (CLI
`--force_download`) fetches it again."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.ensembles import sst2_loader, tiny_bert_folder
from helpers.hub import online, serving_endpoint

from hf_sgdr.cli import main
from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotLoadError

REPO = "me/served"


def _files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def _weight_downloads(requests: list[tuple[str, str, dict[str, str], bytes]]) -> list[str]:
    return [path for method, path, _, _ in requests if method == "GET" and path.endswith("/model.safetensors")]


def test_a_file_damaged_in_the_cache_is_refused_and_force_download_fetches_it_again(tmp_path: Path) -> None:
    folder, cache = tiny_bert_folder(), tmp_path / "cache"
    loader = sst2_loader("validation[:16]")
    expected = SnapshotEnsemble.from_pretrained(folder, progress=False).predict(loader).member_outputs
    with serving_endpoint(REPO, _files(folder)) as (endpoint, recorder), online():
        hub = dict(cache_dir=cache, endpoint=endpoint, progress=False)
        loaded = SnapshotEnsemble.from_pretrained(REPO, **hub)
        assert torch.equal(loaded.predict(loader).member_outputs, expected)
        assert len(_weight_downloads(recorder.requests)) == loaded.num_snapshots == 4

        cached = next(cache.glob("models--me--served/snapshots/*/cycle-001/model.safetensors")).resolve()
        data = bytearray(cached.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, other bytes: the cache's own check (size, etag) sees nothing
        cached.write_bytes(bytes(data))
        with pytest.raises(SnapshotLoadError, match=r"cycle-001/model\.safetensors is corrupt") as refused:
            SnapshotEnsemble.from_pretrained(REPO, **hub)
        assert "force_download=True" in str(refused.value) and "--force_download" in str(refused.value)
        assert len(_weight_downloads(recorder.requests)) == 4  # the cache was trusted: nothing fetched again

        fetched = SnapshotEnsemble.from_pretrained(REPO, force_download=True, **hub)
        assert torch.equal(fetched.predict(loader).member_outputs, expected)
        assert len(_weight_downloads(recorder.requests)) == 8 and recorder.unexpected == []


def test_force_download_of_a_local_folder_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"force_download applies to Hub repos; .*tiny_bert is a local folder"):
        SnapshotEnsemble.from_pretrained(tiny_bert_folder(), force_download=True)


def test_the_cli_refuses_force_download_with_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "--checkpoints", str(tmp_path), "--force_download"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--force_download applies to Hub repos; --checkpoints reads a local Trainer output_dir" in err
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", str(tiny_bert_folder()), "--force_download"])  # refused before anything is read
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "force_download applies to Hub repos; " in err and "is a local folder" in err
