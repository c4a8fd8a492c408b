"""LoRA snapshots of MiniLM: one base model, adapters switched, soups that average the adapters exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.ensembles import MODEL_ID, lora_folder, lora_model, sst2_loader
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForSequenceClassification

from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotManifest
from hf_sgdr.snapshots.outputs import materialize


@pytest.fixture(scope="module")
def loader() -> object:
    return sst2_loader("validation[:16]")


@pytest.fixture(scope="module")
def ensemble() -> SnapshotEnsemble:
    return SnapshotEnsemble.from_pretrained(lora_folder(), progress=False)


def _reference_model(folder: Path) -> PeftModel:
    base = AutoModelForSequenceClassification.from_pretrained(MODEL_ID, num_labels=2)
    return PeftModel.from_pretrained(base, folder).eval()


def _logits(model: torch.nn.Module, loader: object) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(**inputs).logits for inputs in materialize(loader).inputs])


def test_lora_snapshots_hold_only_adapters_and_share_one_base(ensemble: SnapshotEnsemble, loader: object) -> None:
    manifest = SnapshotManifest.load(lora_folder())
    assert manifest.snapshot_type == "peft_adapter" and manifest.base_model == MODEL_ID
    for record in manifest.snapshots:
        assert "adapter_model.safetensors" in record.files and "model.safetensors" not in record.files
        assert sum(f.size for f in record.files.values()) < 1_000_000  # vs ~90 MB for a full MiniLM
    model = ensemble._runner.model
    assert set(model.peft_config) == {"cycle-000", "cycle-001", "cycle-002"}
    assert (
        sum(
            isinstance(m, AutoModelForSequenceClassification._model_mapping[type(model.config)])
            for m in model.modules()
        )
        == 1
    )

    prediction = ensemble.predict(loader)
    for i, name in enumerate(ensemble.snapshot_names):
        torch.testing.assert_close(
            prediction.member_outputs[i], _logits(_reference_model(lora_folder() / name), loader)
        )
    assert ensemble.resident_models_peak == 1  # switching adapters loads no second model
    assert not any(p.requires_grad for p in model.parameters())  # set_adapter(..., inference_mode=True)


def test_adapter_soup_equals_the_soup_of_the_merged_models(ensemble: SnapshotEnsemble, loader: object) -> None:
    model = ensemble._runner.soup([0, 1, 2])
    names = ensemble.snapshot_names
    checked = 0
    for module in model.modules():
        if isinstance(module, LoraLayer) and names[0] in module.lora_A:
            members = torch.stack([module.get_delta_weight(n) for n in names]).mean(0)
            torch.testing.assert_close(module.get_delta_weight("hf_sgdr-soup"), members, atol=1e-7, rtol=1e-5)
            checked += 1
    assert checked == 4  # query and value of the last two layers
    heads = [model.base_model.model.classifier.modules_to_save[n].weight for n in [*names, "hf_sgdr-soup"]]
    torch.testing.assert_close(heads[-1], torch.stack(heads[:-1]).mean(0))

    merged = [_reference_model(lora_folder() / name).merge_and_unload() for name in names]
    mean_model = merged[0]
    with torch.no_grad():
        for key, value in mean_model.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.stack([m.state_dict()[key] for m in merged]).mean(0))
    torch.testing.assert_close(_logits(model, loader), _logits(mean_model.eval(), loader), atol=1e-5, rtol=1e-4)


def test_peft_round_trip_and_seed_api(tmp_path: Path, ensemble: SnapshotEnsemble, loader: object) -> None:
    before = ensemble.predict(loader)
    saved = ensemble.save_pretrained(tmp_path / "lora")
    reloaded = SnapshotEnsemble.from_pretrained(saved, progress=False).predict(loader)
    assert torch.equal(reloaded.member_outputs, before.member_outputs)

    seed = SnapshotEnsemble(max_snapshots=2, progress=False)
    trained = [_reference_model(lora_folder() / name) for name in ensemble.snapshot_names]
    for model in trained:
        seed.add_model(model)
    assert seed.snapshot_type == "peft_adapter" and seed.snapshot_names == ["cycle-001", "cycle-002"]
    assert set(seed._runner.model.peft_config) == {"default", "cycle-001", "cycle-002"}  # the oldest was deleted
    torch.testing.assert_close(seed.predict(loader).member_outputs, before.member_outputs[1:])
    seed.save_pretrained(tmp_path / "seed")
    manifest = SnapshotManifest.load(tmp_path / "seed")
    assert manifest.snapshot_type == "peft_adapter" and manifest.base_model == MODEL_ID
    assert all(
        "adapter_model.safetensors" in r.files and "model.safetensors" not in r.files for r in manifest.snapshots
    )
    again = SnapshotEnsemble.from_pretrained(tmp_path / "seed", progress=False).predict(loader)
    torch.testing.assert_close(again.member_outputs, before.member_outputs[1:])


def test_soup_refuses_adapters_with_different_configs(ensemble: SnapshotEnsemble) -> None:
    from peft import LoraConfig

    from hf_sgdr.snapshots.adapters import add_averaged_adapter

    model = lora_model()
    model.add_adapter("wider", LoraConfig(task_type="SEQ_CLS", r=8, target_modules=["query", "value"]))
    with pytest.raises(ValueError, match=r"adapter 'wider' differs from 'default' in \[.*'r'.*\]; a soup needs one"):
        add_averaged_adapter(model, ["default", "wider"], [0.5, 0.5], "soup")


def test_adapters_on_a_local_base_model_that_is_not_here_name_base_model(
    tmp_path: Path, loader: object, ensemble: SnapshotEnsemble, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pushed manifest names a local base model `./<name>`: where no such folder is, the load says to pass
    base_model= (the command's --base_model), which then loads the adapters on it."""
    import json
    import shutil

    from hf_sgdr.cli import main

    folder = tmp_path / "pushed"
    shutil.copytree(lora_folder(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["base_model"] = "./minilm-finetuned"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"local base model, \./minilm-finetuned, and there is no such folder here: "):
        SnapshotEnsemble.from_pretrained(folder, progress=False)
    given = SnapshotEnsemble.from_pretrained(folder, base_model=MODEL_ID, progress=False)
    torch.testing.assert_close(given.predict(loader).member_outputs, ensemble.predict(loader).member_outputs)
    command = ["evaluate", str(folder), "--eval_split", "validation[:8]", "--no_soups"]
    assert main([*command, "--base_model", MODEL_ID, "--output_json", str(tmp_path / "report.json")]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["num_eval_items"] == 8
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(command)
    assert "pass base_model= (hf-sgdr evaluate --base_model)" in capsys.readouterr().err
