"""The pipeline's dataset as an MLflow dataset input: source, digest, schema and split counts."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.schema import TensorDatasetSchema
from mlflow.types import Schema, TensorSpec

from steps.config import DataConfig

if TYPE_CHECKING:  # steps.data imports TensorFlow; only its type is needed here
    from steps.data import SourceInfo

CONTEXT = "training"  # MLflow's word for the data a run was built from; the splits are in the profile


class ImageDataset(MetaDataset):
    """Metadata of an image dataset (never the pixels): MLflow shows its profile next to the digest."""

    def __init__(self, source: DatasetSource, name: str, digest: str, schema: TensorDatasetSchema, profile: dict[str, Any]):
        self._profile = profile
        self._tensor_schema = schema
        super().__init__(source=source, name=name, digest=digest)

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    @property
    def schema(self) -> TensorDatasetSchema:
        return self._tensor_schema

    def to_dict(self) -> dict[str, str]:
        config = {
            "name": self.name,
            "digest": self.digest,
            "source": self.source.to_json(),
            "source_type": self.source._get_source_type(),
        }
        config["schema"] = json.dumps(self.schema.to_dict())
        config["profile"] = json.dumps(self.profile)
        return config


def _source(cfg: DataConfig) -> DatasetSource:
    if cfg.is_folder:
        with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns that it picked one
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(str(Path(cfg.dataset).resolve()))
    loaders = {"digits": "sklearn.datasets.load_digits()", "cats_vs_dogs": "tensorflow_datasets.load('cats_vs_dogs')"}
    tags = {"loader": loaders.get(cfg.dataset, cfg.dataset)}
    if cfg.data_dir:
        tags["data_dir"] = cfg.data_dir
    return CodeDatasetSource(tags)


def dataset(cfg: DataConfig, info: SourceInfo) -> ImageDataset:
    """Pixel images (uint8 values, H×W×3 at the run's image size) and integer labels, 70/20/10."""
    size = cfg.image_size
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(np.uint8), (-1, size, size, 3), "images")]),
        targets=Schema([TensorSpec(np.dtype(np.int64), (-1,), "labels")]),
    )
    profile = {
        **{f"{split}_images": count for split, count in info.counts.items()},
        "images": sum(info.counts.values()),
        "classes": len(info.labels),
        "labels": list(info.labels),
        "image_size": size,
        "split": f"{cfg.train_fraction:g}/{cfg.val_fraction:g}/{1 - cfg.train_fraction - cfg.val_fraction:g}",
        "seed": cfg.seed,
    }
    name = Path(cfg.dataset).name if cfg.is_folder else cfg.dataset
    return ImageDataset(_source(cfg), name, info.fingerprint, schema, profile)


def log_dataset(cfg: DataConfig, info: SourceInfo) -> ImageDataset:
    """Log the dataset as an input of the active run, the split counts also as input tags."""
    ds = dataset(cfg, info)
    mlflow.log_input(ds, context=CONTEXT, tags={f"{split}_images": str(n) for split, n in info.counts.items()})
    return ds
