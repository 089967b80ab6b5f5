"""Every registered version as an MLflow 3 logged model: TFLite variants as a pyfunc, the baseline as Keras.

A TFLite logged model's directory is the device bundle (the four files a device
downloads, byte for byte) plus ``MLmodel``, the environment files, an input example
and ``code/edge/`` — the loader module ``edge.pyfunc_loader`` and the few modules it
imports, shipped as code (nothing pickled). The registered version's source is the
logged model (``models:/<model_id>``), so MLflow loads and serves ``models:/NAME@alias``
and the device's ``get-artifact?path=model.tflite`` reads the same directory.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

import edge
from edge import contract, pyfunc_loader
from edge.bundle import load_sample
from edge.inference import TFLiteClassifier
from edge.runtime import find_runtime

FLAVOR_NAME = "tflite"
LOADER_MODULE = pyfunc_loader.__name__
INPUT_NAME = "images"
OUTPUT_NAME = "scores"


def signature(input_shape: tuple[int, ...], input_dtype: np.dtype | str, classes: int,
              input_name: str | None = INPUT_NAME) -> ModelSignature:
    """Images in (any batch, then the model's H×W×C, in its input dtype) → class scores (float32)."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(input_dtype), (-1, *input_shape[1:]), input_name)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes), OUTPUT_NAME)]),
    )


def tflite_requirements() -> list[str]:
    """What the pyfunc needs: the runtime this machine evaluated with, and numpy."""
    runtime = find_runtime()
    return [f"{runtime.package}=={runtime.version}", f"numpy=={np.__version__}"]


def _stage_loader_code(directory: Path) -> Path:
    """Copy the loader and the edge modules it imports into ``directory/edge`` (shipped as code/edge)."""
    package = directory / "edge"
    package.mkdir(parents=True)
    source = Path(edge.__file__).parent
    for module in pyfunc_loader.SHIPPED_MODULES:
        shutil.copyfile(source / f"{module}.py", package / f"{module}.py")
    return package


def save_model(path: str, mlflow_model: Model, bundle_dir: Path, signature: ModelSignature,
               input_example: np.ndarray | None = None, pip_requirements: list[str] | None = None) -> Model:
    """The flavor's save: pyfunc (loader module + code) first, then the device files at the root."""
    import mlflow.pyfunc

    bundle_dir = Path(bundle_dir)
    with tempfile.TemporaryDirectory() as staging:
        mlflow.pyfunc.save_model(
            path, loader_module=LOADER_MODULE, code_paths=[str(_stage_loader_code(Path(staging)))],
            mlflow_model=mlflow_model, signature=signature, input_example=input_example,
            pip_requirements=pip_requirements or tflite_requirements(),
        )
    for name in contract.DEVICE_FILES:
        shutil.copyfile(bundle_dir / name, Path(path) / name)
    if (bundle_dir / contract.SIGNATURE_FILE).is_file():  # a signed bundle: devices that trust a key fetch it
        shutil.copyfile(bundle_dir / contract.SIGNATURE_FILE, Path(path) / contract.SIGNATURE_FILE)
    mlflow_model.add_flavor(
        FLAVOR_NAME, model_file=contract.MODEL_FILE, labels_file=contract.LABELS_FILE,
        sample_file=contract.SAMPLE_FILE, manifest_file=contract.MANIFEST_FILE,
        code=mlflow_model.flavors["python_function"].get("code"),
    )
    mlflow_model.model_size_bytes = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    mlflow_model.save(str(Path(path) / "MLmodel"))
    return mlflow_model


def _new_logged_model(run_id: str, name: str, tags: dict[str, str], model_type: str) -> str:
    """A pending logged model in its source run's experiment (not the caller's), with the run's params."""
    import mlflow

    run = MlflowClient(mlflow.get_tracking_uri()).get_run(run_id)
    model = mlflow.initialize_logged_model(
        name=name, source_run_id=run_id, tags=tags, params=dict(run.data.params), model_type=model_type,
        experiment_id=run.info.experiment_id,
    )
    return model.model_id


def log_tflite(run_id: str, bundle_dir: Path, name: str, tags: dict[str, str]) -> ModelInfo:
    """Log ``bundle_dir`` (a device bundle) as a logged model of ``run_id``; the run's step-0 metrics get linked."""
    classifier = TFLiteClassifier(Path(bundle_dir) / contract.MODEL_FILE)
    classes = int(np.prod(classifier.interpreter.get_output_details()[0]["shape"][1:]))
    images, _ = load_sample(Path(bundle_dir))
    return Model.log(
        None, name=name, flavor=sys.modules[__name__], run_id=run_id,
        model_id=_new_logged_model(run_id, name, tags, FLAVOR_NAME),
        bundle_dir=bundle_dir, signature=signature(classifier.input_shape, classifier.input_dtype, classes),
        input_example=images[:1].astype(classifier.input_dtype),
    )


class _KerasFlavor:
    """MLflow's Keras flavor; its save_model writes the input example before creating the model directory."""

    @staticmethod
    def save_model(path: str, **kwargs) -> None:
        import mlflow.keras

        Path(path).mkdir(parents=True, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)


def log_keras(run_id: str, model, example: np.ndarray, tags: dict[str, str]) -> ModelInfo:
    """The Keras baseline with MLflow's Keras flavor (float32 pixels in, class scores out)."""
    import keras
    import tensorflow as tf

    classes = int(model.output_shape[-1])
    # Unnamed input: Keras' pyfunc would hand a named tensor to the model as a dict keyed by that name.
    sig = signature((1, *example.shape[1:]), np.float32, classes, input_name=None)
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}"]
    return Model.log(
        None, name=contract.BASELINE, flavor=_KerasFlavor, run_id=run_id,
        model_id=_new_logged_model(run_id, contract.BASELINE, tags, contract.FORMAT_KERAS),
        model=model, signature=sig, input_example=example[:1].astype(np.float32), pip_requirements=requirements,
    )


def logged_models_of_run(client: MlflowClient, experiment_id: str, run_id: str) -> list[str]:
    """Ids of the logged models whose source is ``run_id`` (newest first)."""
    found = client.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
    )
    return [m.model_id for m in found]
