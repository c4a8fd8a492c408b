"""The final ensemble table and the schedule plot in the run's TensorBoard, read back from its event files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from helpers.ensembles import tiny_bert
from helpers.training import sst2, tokenizer, training_args
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from hf_sgdr.snapshots import evaluate_trainer_snapshots
from hf_sgdr.snapshots.tracking import PLOT_TAG, REPORT_TAG
from hf_sgdr.training import SGDRTrainer


def compute_metrics(prediction: object) -> dict[str, float]:
    logits, labels = prediction
    return {"acc": float(np.mean(logits.argmax(axis=-1) == labels))}


def read_run(output_dir: Path) -> EventAccumulator:
    """The one TensorBoard run folder of the output_dir, with every text and image kept."""
    (run,) = {p.parent for p in output_dir.rglob("events.out.tfevents.*")}
    return EventAccumulator(str(run), size_guidance={"tensors": 0, "images": 0, "scalars": 0}).Reload()


def test_trainer_run_gets_the_ensemble_table_and_the_schedule_plot(tmp_path: Path) -> None:
    trainer = SGDRTrainer(
        model=tiny_bert(),
        args=training_args(
            tmp_path, max_steps=6, learning_rate=3e-3, per_device_train_batch_size=8, report_to=["tensorboard"]
        ),
        train_dataset=sst2("train", 48),
        eval_dataset=sst2("validation", 16),
        processing_class=tokenizer(),
        sgdr_T_0=3,
    )
    trainer.train()
    report = evaluate_trainer_snapshots(trainer, metrics=[compute_metrics, "nll"])
    assert report.metrics == ["acc", "nll"]

    events = read_run(tmp_path)  # the same run as the training scalars
    assert [e.step for e in events.Scalars("train/sgdr/restart")] == [3, 6]
    (text,) = events.Tensors(f"{REPORT_TAG}/text_summary")
    assert text.step == 6
    table = tensor_util.make_ndarray(text.tensor_proto).item().decode()
    assert table.startswith("**classification snapshot ensemble**, metrics on eval")
    assert "| name | members | forward passes | acc | nll | disagreement |" in table
    for row in report.rows:
        assert f"| {row.name} |" in table and f"{row.metrics['nll']:.4f}" in table
    if report.diversity_reading():
        assert table.endswith(report.diversity_reading())

    (image,) = events.Images(PLOT_TAG)
    assert image.step == 6
    picture = Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB")
    # plot_schedule: 9 in wide; 4 in for the lr and 1.6 in per metric panel (acc and nll here); 110 dpi
    assert picture.size == (image.width, image.height) == (990, 792)
    pixels = np.asarray(picture)
    crimson = (pixels[..., 0] > 180) & (pixels[..., 1] < 60) & (pixels[..., 2] < 80)
    assert crimson.sum() > 50  # the snapshot points are drawn


def test_no_tracker_no_event_files(tmp_path: Path) -> None:
    trainer = SGDRTrainer(
        model=tiny_bert(),
        args=training_args(tmp_path, max_steps=4, learning_rate=3e-3, per_device_train_batch_size=8),
        train_dataset=sst2("train", 32),
        eval_dataset=sst2("validation", 16),
        sgdr_T_0=2,
    )
    trainer.train()
    assert evaluate_trainer_snapshots(trainer, soups=False).rows
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
