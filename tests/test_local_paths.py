"""What a published manifest or card makes of a local path: its last part, never the uploader's folders."""

from __future__ import annotations

import pytest

from hf_sgdr.local_paths import public_text, without_local_paths


@pytest.mark.parametrize(
    ("text", "public"),
    [
        ("/home/alice/corpus/", "./corpus"),
        ("C:\\Users\\alice\\corpus", "./corpus"),
        ("~/data/train.csv", "./train.csv"),
        ("../shared/data/sst2", "./sst2"),
        ("/home/alice/My Data", "./My Data"),
        ("the last 10 % of the rows of /home/alice/ds's train split", "the last 10 % of the rows of ds's train split"),
        ("nyu-mll/glue", "nyu-mll/glue"),  # Hub ids, builder names and plain text stay as they are
        ("text", "text"),
        ("./corpus", "./corpus"),
        ("paragraphs of train.txt", "paragraphs of train.txt"),
        ("10/20 and/or 3/4", "10/20 and/or 3/4"),
        ("https://example.com/data/corpus.csv", "https://example.com/data/corpus.csv"),  # URLs are not local
        ("hf://datasets/someone/corpus", "hf://datasets/someone/corpus"),
    ],
)
def test_published_text_names_a_local_path_by_its_last_part(text: str, public: str) -> None:
    assert public_text(text) == public


def test_without_local_paths_lists_the_keys_it_changed() -> None:
    train_data = {"split": "train", "data_file": None}
    data = {"dataset_name": "/srv/x/corpus", "runs": [3, "~/a/b"], "train_data": train_data}
    public, changed = without_local_paths(data, "training")
    assert public == {"dataset_name": "./corpus", "runs": [3, "./b"], "train_data": train_data}
    assert changed == ["training.dataset_name", "training.runs[1]"]
