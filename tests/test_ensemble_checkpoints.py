"""`SnapshotEnsemble.from_checkpoints` and `hf-sgdr evaluate --checkpoints` on a real stock `Trainer` run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.ensembles import sst2_loader, tiny_bert, tokenizer
from helpers.training import sst2, training_args
from transformers import AutoModelForSequenceClassification, Trainer

from hf_sgdr.cli import main
from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotLoadError, SnapshotManifest
from hf_sgdr.snapshots.outputs import materialize

STEPS = (5, 10, 15)  # checkpoint-10 sorts before checkpoint-5 by name: the ensemble must order by step


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stock Trainer run of a tiny BERT on SST-2: cosine schedule, a checkpoint every 5 steps."""
    out = tmp_path_factory.mktemp("cosine_run")
    args = training_args(
        out,
        max_steps=STEPS[-1],
        lr_scheduler_type="cosine",
        learning_rate=3e-3,
        per_device_train_batch_size=8,
        save_strategy="steps",
        save_steps=STEPS[0],
        logging_steps=1,
    )
    Trainer(model=tiny_bert(), args=args, train_dataset=sst2("train", 64), processing_class=tokenizer()).train()
    return out


@pytest.fixture(scope="module")
def eval_loader() -> object:
    return sst2_loader("validation[:24]")


def _checkpoint_probabilities(folder: Path, loader: object) -> torch.Tensor:
    """The checkpoint loaded on its own with transformers: its class probabilities on the batches."""
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        return torch.cat([model(**inputs).logits for inputs in materialize(loader).inputs]).double().softmax(-1)


def test_checkpoints_ensemble_averages_the_checkpoints_probabilities(run_dir: Path, eval_loader: object) -> None:
    ensemble = SnapshotEnsemble.from_checkpoints(run_dir, task="sst2", progress=False)
    names = [f"checkpoint-{step}" for step in STEPS]
    assert ensemble.snapshot_names == names and ensemble.kind == "classification"
    assert ensemble.auto_class == "AutoModelForSequenceClassification" and ensemble.tokenizer is not None
    assert [r.global_step for r in ensemble.records] == list(STEPS)
    assert all(r.train_loss is not None and r.lr for r in ensemble.records)  # from trainer_state.json
    assert ensemble.records[-1].lr[0] < ensemble.records[0].lr[0]  # the cosine decayed

    prediction = ensemble.predict(eval_loader)
    own = torch.stack([_checkpoint_probabilities(run_dir / name, eval_loader) for name in names])
    assert not torch.allclose(own[0], own[-1], atol=1e-3)  # the checkpoints really differ
    torch.testing.assert_close(prediction.scores, own.mean(dim=0))
    assert torch.equal(prediction.predictions, own.mean(dim=0).argmax(dim=-1))

    report = ensemble.evaluate(eval_loader, soups=False)
    labels = prediction.labels
    expected = float((own.mean(dim=0).argmax(dim=-1) == labels).double().mean())
    assert report.row("ensemble (last 3, average)").metrics["accuracy"] == pytest.approx(expected)
    for name, probabilities in zip(names, own, strict=True):
        accuracy = float((probabilities.argmax(dim=-1) == labels).double().mean())
        assert report.row(name).metrics["accuracy"] == pytest.approx(accuracy)


def test_checkpoints_are_saved_as_a_verified_snapshot_folder(
    run_dir: Path, eval_loader: object, tmp_path: Path
) -> None:
    ensemble = SnapshotEnsemble.from_checkpoints(run_dir, checkpoints=2, progress=False)
    assert ensemble.snapshot_names == ["checkpoint-10", "checkpoint-15"]
    saved = ensemble.save_pretrained(tmp_path / "as_snapshots")
    manifest = SnapshotManifest.load(saved)
    assert [r.name for r in manifest.snapshots] == ["checkpoint-10", "checkpoint-15"]
    assert sorted(manifest.snapshots[0].files) == ["config.json", "model.safetensors"]  # no trainer pickles
    reloaded = SnapshotEnsemble.from_pretrained(saved, progress=False)
    assert torch.equal(reloaded.predict(eval_loader).scores, ensemble.predict(eval_loader).scores)


def test_bad_checkpoint_folders_are_refused_with_the_reason(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SnapshotLoadError, match="no checkpoint-\\* folders in"):
        SnapshotEnsemble.from_checkpoints(tmp_path)
    with pytest.raises(ValueError, match="checkpoints must be"):
        SnapshotEnsemble.from_checkpoints(run_dir, checkpoints=4)
    with pytest.raises(ValueError, match=r"checkpoints \['checkpoint-7'\] are not in the output_dir"):
        SnapshotEnsemble.from_checkpoints(run_dir, checkpoints=["checkpoint-7"])

    pickled = tmp_path / "pickled"
    shutil.copytree(run_dir / "checkpoint-5", pickled / "checkpoint-5", ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(tiny_bert().state_dict(), pickled / "checkpoint-5" / "pytorch_model.bin")
    with pytest.raises(SnapshotLoadError, match=r"refusing checkpoint-5/pytorch_model.bin .*no model.safetensors"):
        SnapshotEnsemble.from_checkpoints(pickled)

    truncated = tmp_path / "truncated"
    shutil.copytree(run_dir / "checkpoint-5", truncated / "checkpoint-5")
    weights = truncated / "checkpoint-5" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(SnapshotLoadError, match=r"checkpoint-5/model.safetensors: tensor .* \(truncated file\?\)"):
        SnapshotEnsemble.from_checkpoints(truncated)


def test_cli_evaluates_checkpoints(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    argv = ["evaluate", "--checkpoints", str(run_dir), "--dataset_name", "nyu-mll/glue", "--dataset_config_name"]
    argv += ["sst2", "--max_eval_samples", "16", "--max_length", "32", "--no_soups", "--output_json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["metrics"] == ["accuracy", "nll", "brier", "ece"] and report["num_eval_items"] == 16
    assert [row["name"] for row in report["rows"] if row["kind"] == "snapshot"] == [f"checkpoint-{s}" for s in STEPS]
    assert "checkpoint-15" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", str(run_dir), "--checkpoints", str(run_dir)])
    assert "not both" in capsys.readouterr().err


def test_cli_asks_which_configuration_of_a_dataset(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Checkpoints record no dataset: GLUE without a configuration (sst2 and rte in the offline cache) is refused
    with the flag that chooses one."""
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoints", str(run_dir), "--dataset_name", "nyu-mll/glue", "--max_eval_samples", "8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hf-sgdr evaluate: error: ") and "rte, sst2" in err
    assert err.endswith("; choose one with --dataset_config_name")


def test_cli_refuses_an_option_the_checkpoints_kind_cannot_use_before_checksumming(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The kind comes from the first checkpoint's config, so `--max_eval_blocks` on classifiers is refused before
    any checkpoint's weights are read (the last one's broken header would be reported otherwise)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    weights = run / f"checkpoint-{STEPS[-1]}" / "model.safetensors"
    weights.write_bytes(b"corrupt" + weights.read_bytes()[7:])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoints", str(run), "--dataset_name", "nyu-mll/glue", "--max_eval_blocks", "2"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--max_eval_blocks applies to language models" in err and "header" not in err
