"""A PEFT LoRA model: each snapshot holds only the adapter (with the classifier head PEFT saves for
sequence classification), loads onto a fresh base model, and reproduces the trained model."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers.training import (
    MODEL_ID,
    assert_checksums,
    minilm,
    read_manifest,
    sst2,
    tokenizer,
    training_args,
)
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from safetensors.torch import load_file

from hf_sgdr.training import SGDRTrainer


def test_lora_snapshots_hold_only_the_adapter_and_reload(tmp_path: Path) -> None:
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"])
    model = get_peft_model(minilm(), config)
    trainer = SGDRTrainer(
        model=model,
        args=training_args(tmp_path, max_steps=6, learning_rate=1e-3),
        train_dataset=sst2("train", 24),
        processing_class=tokenizer(),
        sgdr_T_0=3,
    )
    trainer.train()

    snapshot_dir = tmp_path / "snapshots"
    manifest = read_manifest(snapshot_dir)
    assert (manifest.snapshot_type, manifest.auto_class, manifest.base_model, manifest.task) == (
        "peft_adapter",
        "AutoModelForSequenceClassification",
        MODEL_ID,
        "text-classification",
    )
    assert [r.global_step for r in manifest.snapshots] == [3, 6]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for record in manifest.snapshots:
        assert_checksums(snapshot_dir, record)
        assert {"adapter_model.safetensors", "adapter_config.json"} <= set(record.files)
        assert not any(name.startswith("model") or name == "config.json" for name in record.files)
        tensors = load_file(str(snapshot_dir / record.name / "adapter_model.safetensors"))
        assert any("lora_A" in k for k in tensors) and any("lora_B" in k for k in tensors)
        assert any("classifier" in k for k in tensors)  # the head (modules_to_save) travels with the adapter
        assert not any("attention.self.key" in k or "word_embeddings" in k for k in tensors)  # no base weights
        assert sum(t.numel() for t in tensors.values()) == trainable
        assert record.files["adapter_model.safetensors"].size < 200_000  # the base model is ~90 MB

    fresh = PeftModel.from_pretrained(minilm(), snapshot_dir / "cycle-001").eval()
    batch = tokenizer()(["a gorgeous, witty film", "dull and lifeless"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(fresh(**batch).logits, model.eval()(**batch).logits)
