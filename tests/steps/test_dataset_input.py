"""The dataset as MLflow sees it: source, digest, tensor schema and split counts (no pixels)."""
from __future__ import annotations

import json
from types import SimpleNamespace

from steps.config import DataConfig
from steps.dataset_input import dataset

INFO = SimpleNamespace(labels=("blobs", "checks"), counts={"train": 56, "val": 16, "test": 8}, fingerprint="0123456789abcdef")


def test_an_image_folder_is_a_local_source_with_its_split_counts(tmp_path):
    folder = tmp_path / "my images"
    folder.mkdir()
    ds = dataset(DataConfig(dataset=str(folder), image_size=32), INFO)
    entity = ds._to_mlflow_entity()
    assert (entity.name, entity.digest, entity.source_type) == ("my images", "0123456789abcdef", "local")
    assert json.loads(entity.source)["uri"] == str(folder)
    profile = json.loads(entity.profile)
    assert (profile["train_images"], profile["val_images"], profile["test_images"], profile["images"]) == (56, 16, 8, 80)
    assert profile["labels"] == ["blobs", "checks"] and profile["split"] == "0.7/0.2/0.1"
    features = json.loads(json.loads(entity.schema)["mlflow_tensorspec"]["features"])
    assert features[0]["tensor-spec"] == {"dtype": "uint8", "shape": [-1, 32, 32, 3]}


def test_a_built_in_dataset_names_its_loader():
    entity = dataset(DataConfig(dataset="cats_vs_dogs", data_dir="/data/tfds dir"), INFO)._to_mlflow_entity()
    assert entity.source_type == "code"
    assert json.loads(entity.source)["tags"] == {"loader": "tensorflow_datasets.load('cats_vs_dogs')", "data_dir": "/data/tfds dir"}
