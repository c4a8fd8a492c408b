"""Members that are not the model the ensemble builds are refused at load, naming the member and the file, before
any weight is read: tensors missing (transformers would initialise them at random), extra or reshaped; an
`auto_class` that builds another head; members that disagree with each other; a `config.json` or safetensors
header that transformers would choke on later. Each damage goes to a later member (cycle-002) with the checksums
made consistent again, and to a `checkpoint-*` folder for `from_checkpoints`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers
from helpers.damage import edit_header, edit_manifest, edit_weights, rerecord, write_checkpoints
from helpers.ensembles import (
    copy_folder,
    lora_folder,
    tiny_bert,
    tiny_bert_folder,
    tiny_gpt2,
    tiny_lm_folder,
    tokenizer,
)

from hf_sgdr.snapshots import SnapshotEnsemble, SnapshotLoadError

MEMBER = "cycle-002"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return copy_folder(tiny_bert_folder(), tmp_path / "snapshots")


def _damage_member(folder: Path, damage: Callable[[Path], object]) -> None:
    damage(folder / MEMBER)
    rerecord(folder, MEMBER)


def _edit_config(member: Path, edit: Callable[[dict], object]) -> None:
    config = json.loads((member / "config.json").read_text())
    edit(config)
    (member / "config.json").write_text(json.dumps(config))


def _other_model(member: Path, model: torch.nn.Module) -> None:
    for path in member.iterdir():
        path.unlink()
    model.save_pretrained(member)


def _bert(**changes: object) -> torch.nn.Module:
    torch.manual_seed(0)
    config = tiny_bert().config.to_dict() | changes
    return transformers.BertForSequenceClassification(transformers.BertConfig(**config))


TENSOR_DAMAGE = {
    "head missing": (
        lambda m: edit_weights(m / "model.safetensors", lambda t: t.pop("classifier.weight")),
        r"missing \['classifier.weight'\] \(transformers would initialise them at random\)",
    ),
    "layer missing": (
        lambda m: edit_weights(
            m / "model.safetensors", lambda t: [t.pop(k) for k in list(t) if k.startswith("bert.encoder.layer.1.")]
        ),
        r"missing \['bert.encoder.layer.1.attention.output.LayerNorm.bias', .*\] and \d+ more",
    ),
    "extra tensor": (
        lambda m: edit_weights(m / "model.safetensors", lambda t: t.update(extra=torch.zeros(3))),
        r"unexpected \['extra'\]",
    ),
    "reshaped": (
        lambda m: edit_weights(m / "model.safetensors", lambda t: t.update({"classifier.bias": torch.zeros(5)})),
        r"'classifier.bias' has shape \[5\], the model expects \[2\]",
    ),
}


@pytest.mark.parametrize("damage", list(TENSOR_DAMAGE))
def test_a_member_whose_tensors_are_not_its_models_is_refused_naming_the_file(folder: Path, damage: str) -> None:
    edit, message = TENSOR_DAMAGE[damage]
    _damage_member(folder, edit)
    with pytest.raises(SnapshotLoadError, match=rf"^{MEMBER}/model.safetensors does not hold the Bert.*{message}"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)
    # The other members are fine: leaving the damaged one out loads.
    others = ["cycle-000", "cycle-001", "cycle-003"]
    assert SnapshotEnsemble.from_pretrained(folder, snapshots=others, progress=False).snapshot_names == others


def test_tied_weights_left_out_of_the_file_are_not_missing(tmp_path: Path) -> None:
    folder = copy_folder(tiny_lm_folder(), tmp_path / "lm")  # GPT-2: lm_head.weight is the tied wte, not stored
    assert SnapshotEnsemble.from_pretrained(folder, progress=False).num_snapshots == 3
    _damage_member(folder, lambda m: edit_weights(m / "model.safetensors", lambda t: t.pop("transformer.wte.weight")))
    with pytest.raises(SnapshotLoadError, match=r"missing \['lm_head.weight', 'transformer.wte.weight'\]"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)


@pytest.mark.parametrize("auto_class", ["AutoModelForCausalLM", "AutoModelForTokenClassification"])
def test_an_auto_class_that_builds_another_head_is_refused(folder: Path, auto_class: str) -> None:
    edit_manifest(folder, lambda data: data.update(auto_class=auto_class))
    with pytest.raises(
        SnapshotLoadError,
        match=rf"^cycle-000/config.json describes \[.BertForSequenceClassification.\], which auto_class {auto_class}",
    ):
        SnapshotEnsemble.from_pretrained(folder, progress=False)


DISAGREEMENT = {
    "label count": (lambda m: _other_model(m, tiny_bert(num_labels=3)), r"num_labels 3 \(theirs 2 in 'cycle-000'\)"),
    "hidden size": (
        lambda m: _other_model(m, _bert(hidden_size=64, intermediate_size=128)),
        r"tensor 'bert.embeddings.LayerNorm.bias' has shape \[64\] \(theirs \[32\] in 'cycle-000'\)",
    ),
    "layers": (lambda m: _other_model(m, _bert(num_hidden_layers=3)), r"tensors \['bert.encoder.layer.2.attention"),
    "regression": (
        lambda m: _other_model(m, _bert(problem_type="regression", num_labels=1, id2label=None, label2id=None)),
        r"num_labels 1 \(theirs 2 in 'cycle-000'\)",
    ),
}


@pytest.mark.parametrize("difference", list(DISAGREEMENT))
def test_members_that_are_not_one_model_are_refused_naming_the_member(folder: Path, difference: str) -> None:
    edit, message = DISAGREEMENT[difference]
    _damage_member(folder, edit)
    with pytest.raises(SnapshotLoadError, match=rf"^member '{MEMBER}' is not the same model as 'cycle-000': {message}"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)


def test_a_member_with_untied_weights_among_tied_ones_is_refused(tmp_path: Path) -> None:
    folder = copy_folder(tiny_lm_folder(), tmp_path / "lm")
    config = transformers.GPT2Config(**tiny_gpt2().config.to_dict() | {"tie_word_embeddings": False})
    _damage_member(folder, lambda m: _other_model(m, transformers.GPT2LMHeadModel(config)))
    with pytest.raises(SnapshotLoadError, match=r"^member 'cycle-002' .*: tensors \['lm_head.weight'\] are in one"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)


def test_a_member_of_another_architecture_is_refused(folder: Path) -> None:
    config = transformers.DistilBertConfig(vocab_size=tokenizer().vocab_size, dim=32, n_layers=1, n_heads=2)
    _damage_member(folder, lambda m: _other_model(m, transformers.DistilBertForSequenceClassification(config)))
    with pytest.raises(SnapshotLoadError, match=rf"^member '{MEMBER}' is not the same model .*model_type 'distilbert'"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)


BROKEN_CONFIG = {
    "invalid JSON": (lambda m: (m / "config.json").write_text('{"model_type": "bert",'), r"is not valid JSON"),
    "deep nesting": (
        lambda m: (m / "config.json").write_text('{"model_type": "bert", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        r"is not valid JSON: RecursionError",
    ),
    "a list": (lambda m: (m / "config.json").write_text("[1, 2]"), r"is not a transformers config"),
    "no model_type": (lambda m: _edit_config(m, lambda c: c.pop("model_type")), r"is not a transformers config"),
    "hidden_size a string": (
        lambda m: _edit_config(m, lambda c: c.update(hidden_size="32")),
        r"(can use without remote code|does not describe a BertForSequenceClassification that can be built)",
    ),
    "id2label a number": (lambda m: _edit_config(m, lambda c: c.update(id2label=7)), r"without remote code"),
    "no heads": (
        lambda m: _edit_config(m, lambda c: c.update(num_attention_heads=0)),
        r"(can use without remote code|that can be built)",
    ),
    "architectures a string": (
        lambda m: _edit_config(m, lambda c: c.update(architectures="BertForSequenceClassification")),
        r"architectures must be a list",
    ),
    "unknown model_type with auto_map": (
        lambda m: _edit_config(
            m, lambda c: c.update(model_type="mystery", auto_map={"AutoConfig": "mystery.MysteryConfig"})
        ),
        r"can use without remote code",
    ),
}


@pytest.mark.parametrize("damage", list(BROKEN_CONFIG))
def test_a_broken_config_of_a_later_member_is_refused_at_load_naming_the_file(folder: Path, damage: str) -> None:
    edit, message = BROKEN_CONFIG[damage]
    _damage_member(folder, edit)
    with pytest.raises(SnapshotLoadError, match=rf"^{MEMBER}/config.json.*{message}"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)


@pytest.mark.parametrize("metadata", [{"format": "pt", "step": 3}, {"format": ["pt"]}, ["pt"], "pt"])
def test_safetensors_metadata_that_is_not_strings_is_refused_at_load(folder: Path, metadata: object) -> None:
    _damage_member(folder, lambda m: edit_header(m / "model.safetensors", lambda h: h.update(__metadata__=metadata)))
    with pytest.raises(SnapshotLoadError, match=rf"{MEMBER}/model.safetensors: the safetensors __metadata__ must map"):
        SnapshotEnsemble.from_pretrained(folder, progress=False)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (TENSOR_DAMAGE["head missing"][0], r"^checkpoint-10/model.safetensors does not hold .*missing"),
        (BROKEN_CONFIG["invalid JSON"][0], r"^checkpoint-10/config.json is not valid JSON"),
        (BROKEN_CONFIG["unknown model_type with auto_map"][0], r"^checkpoint-10/config.json .*without remote code"),
        (DISAGREEMENT["label count"][0], r"^member 'checkpoint-10' is not the same model as 'checkpoint-5'"),
    ],
)
def test_checkpoints_get_the_same_checks(tmp_path: Path, damage: Callable[[Path], object], message: str) -> None:
    run = write_checkpoints(tmp_path / "run", tiny_bert(), (5, 10, 15))
    damage(run / "checkpoint-10")
    with pytest.raises(SnapshotLoadError, match=message):
        SnapshotEnsemble.from_checkpoints(run, progress=False)
    with pytest.raises(SnapshotLoadError, match=r"^checkpoint-5/config.json describes \['BertForSequenceClass"):
        SnapshotEnsemble.from_checkpoints(run, checkpoints=["checkpoint-5"], auto_class="AutoModelForCausalLM")


ADAPTER_DAMAGE = {
    "lora tensor missing": (
        lambda t: t.pop(next(k for k in sorted(t) if "lora_A" in k)),
        r"^cycle-002/adapter_model.safetensors does not hold the adapter .*: missing \['.*lora_A",
    ),
    "extra tensor": (lambda t: t.update(extra=torch.zeros(2)), r"^cycle-002/adapter_model.safetensors .*unexpected"),
    "head of 3 labels": (
        lambda t: [t.update({k: torch.zeros(3, *v.shape[1:])}) for k, v in list(t.items()) if "classifier" in k],
        r"^cycle-002/adapter_config.json or adapter_model.safetensors cannot be loaded",
    ),
}


@pytest.mark.parametrize("damage", [*ADAPTER_DAMAGE, "config invalid JSON"])
def test_a_peft_member_whose_adapter_is_not_whole_is_refused(tmp_path: Path, damage: str) -> None:
    folder = copy_folder(lora_folder(), tmp_path / "lora")
    if damage == "config invalid JSON":
        _damage_member(folder, lambda m: (m / "adapter_config.json").write_text('{"peft_type": '))
        message = r"^cycle-002/adapter_config.json or adapter_model.safetensors cannot be loaded"
    else:
        edit, message = ADAPTER_DAMAGE[damage]
        _damage_member(folder, lambda m: edit_weights(m / "adapter_model.safetensors", edit))
    with pytest.raises(SnapshotLoadError, match=message):
        SnapshotEnsemble.from_pretrained(folder, progress=False)


def test_a_shard_the_index_does_not_name_is_not_counted(folder: Path) -> None:
    """transformers reads the shards the index maps tensors to: a listed shard it never names holds nothing."""

    def shard(member: Path) -> None:
        tiny_bert().save_pretrained(member, max_shard_size="1MB")
        (member / "model.safetensors").unlink(missing_ok=True)
        index = json.loads((member / "model.safetensors.index.json").read_text())
        last = sorted(set(index["weight_map"].values()))[-1]
        index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != last}
        (member / "model.safetensors.index.json").write_text(json.dumps(index))

    _damage_member(folder, shard)
    with pytest.raises(SnapshotLoadError, match=rf"^{MEMBER}/model-00001-of-.*does not hold .* missing \["):
        SnapshotEnsemble.from_pretrained(folder, progress=False)
