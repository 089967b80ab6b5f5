"""The ``main`` entry point of the MLflow project: baseline → variants → registry → comparison.

Usage: ``mlflow run . --env-manager local -P quant=int8`` or ``python -m steps.pipeline --quant int8``.
Every input is checked before any data is loaded or any model trained.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from steps import quiet

quiet.import_tensorflow()  # before any module below imports it: a failure is then one line, not a page of logs

import click  # noqa: E402
import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE  # noqa: E402

from edge import contract, signing, ui_links  # noqa: E402
from edge.bundle import label_tags  # noqa: E402
from edge.registry_client import ServerUnreachable, check_server  # noqa: E402
from steps import baseline as baseline_mod  # noqa: E402
from steps import data as data_mod  # noqa: E402
from steps import model as model_mod  # noqa: E402
from steps import dataset_input, fingerprint, project_run, register, report, stop, summary  # noqa: E402
from steps import sample_size as sample_size_mod  # noqa: E402
from steps.config import DISTRIBUTE, QUANT_CHOICES, DataConfig, QuantConfig, TrainConfig, baseline_key, variants_for  # noqa: E402
from steps.input_cache import CacheConfig  # noqa: E402
from steps.variant import Arrays, VariantResult, run_variant  # noqa: E402

MIN_CALIBRATION = 100


class PipelineError(click.ClickException):
    """A one-line error shown before heavy work starts: bad input, exit 2."""

    exit_code = int(contract.ExitCode.BAD_CONFIG)


class ServerUnreachableError(PipelineError):
    """The tracking server cannot be reached: exit 3, as in edgeq and edgeq-pull."""

    exit_code = int(contract.ExitCode.UNREACHABLE)


def _sample_size(value: str) -> int:
    try:
        return sample_size_mod.parse(value)
    except ValueError as exc:
        raise PipelineError(str(exc)) from exc


def validate(data: DataConfig, train: TrainConfig, quant: QuantConfig) -> data_mod.SourceInfo:
    """All the cheap checks but the server's (run: first), in the order a user would fix them."""
    if data.image_size < 8:
        raise PipelineError(f"image_size {data.image_size} is too small: use 8 or more (the article uses 224)")
    try:
        model_mod.check(train)
        info = data_mod.inspect(data)
    except (model_mod.ModelError, data_mod.DataError) as exc:
        raise PipelineError(str(exc)) from exc
    if quant.calibration_images < MIN_CALIBRATION:
        raise PipelineError(f"calibration_images={quant.calibration_images}: use at least {MIN_CALIBRATION}")
    if info.scan:
        click.echo(info.scan.summary())
        for warning in info.scan.warnings:
            click.echo(f"Warning: {warning}", err=True)
    return info


def training_layout(client: MlflowClient, experiment_id: str) -> None:
    """Tag the run's experiment for MLflow UI's training layout (runs, models), unless it has a kind already.

    Whoever created it (``set_experiment`` below, ``mlflow run --experiment-name``, a user), without
    the tag MLflow 3's UI opens it in the GenAI layout (traces, evaluations); a kind chosen in the UI stays.
    """
    if contract.TAG_EXPERIMENT_KIND not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, contract.TAG_EXPERIMENT_KIND, contract.EXPERIMENT_KIND_TRAINING)


def run(quant_choice: str, data: DataConfig, train: TrainConfig, quant: QuantConfig, model_name: str | None,
        signing_key: signing.Ed25519PrivateKey | None = None) -> list[report.Row]:
    try:
        check_server(mlflow.get_tracking_uri())
    except ServerUnreachable as exc:
        raise ServerUnreachableError(str(exc)) from exc
    info = validate(data, train, quant)
    client = MlflowClient()
    name = model_name or register.registered_model_name(data.dataset, train.model)
    if not os.environ.get("MLFLOW_RUN_ID") and not os.environ.get("MLFLOW_EXPERIMENT_ID") and not os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        mlflow.set_experiment(contract.PIPELINE_EXPERIMENT)
    with mlflow.start_run(run_name=f"edgeq-{quant_choice}") as parent, stop.failure_reason(), \
            tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        training_layout(client, parent.info.experiment_id)
        mlflow.set_tag(contract.TAG_ROLE, contract.ROLE_PIPELINE)
        # `mlflow run` has already logged the MLproject parameters as given; add only the rest.
        given = client.get_run(parent.info.run_id).data.params
        params = {"quant": quant_choice, "registered_model": name, **asdict(data), **asdict(train), **asdict(quant)}
        mlflow.log_params({k: v for k, v in params.items() if k not in given})
        dataset_input.log_dataset(data, info)
        if info.scan:
            mlflow.log_text(info.scan.table(), contract.DATA_SCAN_FILE)
        splits = data_mod.load(data, info, CacheConfig(directory=work / "input_cache"))
        code = fingerprint.code_fingerprint()
        key = baseline_key(data, train, info.fingerprint, code)
        found = baseline_mod.find(client, parent.info.experiment_id, key)
        if found:
            click.echo(f"reusing baseline run {found.run_id} (same data, training parameters and code)")
            base = baseline_mod.load(client, found)
        else:
            base = baseline_mod.train_new(splits, data, train, key, code, work)
        mlflow.set_tags({contract.TAG_BASELINE_RUN: base.run_id, contract.TAG_BASELINE_REUSED: str(base.reused).lower()})

        calibration, _ = data_mod.to_arrays(splits.train, quant.calibration_images)
        # The device gate's sample: sized for its power at the accuracy budget, within a bounded download (docs/accuracy.md).
        sample = sample_size_mod.choose(quant.sample_size, base.accuracy, data.image_size, info.counts["test"])
        click.echo(sample.describe())
        arrays = Arrays(calibration, splits.test, info.labels, data_mod.to_arrays(splits.test, sample.size))
        results: list[VariantResult] = []
        fp32_p50 = None
        for variant in variants_for(quant_choice):
            result = run_variant(variant, base, arrays, data, train, quant, work, fp32_p50)
            fp32_p50 = fp32_p50 or result.metrics[contract.M_P50]
            results.append(result)
            drop = result.metrics[contract.M_DROP]
            if variant == contract.INT8 and drop > quant.selective_if_drop_above and contract.SELECTIVE not in variants_for(quant_choice):
                click.echo(f"int8 loses {drop:.2f} points (budget {quant.selective_if_drop_above:.2f}): "
                           "building the selective variant (sensitive layers stay float)")
                results.append(run_variant(contract.SELECTIVE, base, arrays, data, train, quant, work, fp32_p50))

        # Registered only once every variant converted and evaluated: nothing half-way.
        register.ensure_registered_model(client, name, f"edgeq: {train.model} on {data.dataset}")
        rows = []
        if not register.versions_of_run(client, name, base.run_id):
            tags = {contract.TAG_VARIANT: contract.BASELINE, contract.TAG_FORMAT: contract.FORMAT_KERAS,
                    contract.TAG_QUANTIZATION: "none", **label_tags(info.labels),
                    contract.TAG_BASELINE_KEY: key}
            version = register.register_keras(client, name, base.run_id, base.model, calibration[:1], tags, "Keras baseline")
            rows.append(report.Row(contract.BASELINE, version, base.accuracy, 0.0, base.size_bytes, 1.0, None, None, None))
        else:
            rows.append(report.Row(contract.BASELINE, "reused", base.accuracy, 0.0, base.size_bytes, 1.0, None, None, None))
        for r in results:
            gate_tags, gate_metrics = sample_size_mod.gate_figures(r.metrics[contract.M_ACCURACY], len(arrays.sample[1]))
            for key, value in gate_metrics.items():
                client.log_metric(r.run_id, key, value)
            tags = {**r.tags, **gate_tags, contract.TAG_BASELINE_RUN: base.run_id}
            signed = {contract.TAG_SIGNING_KEY_FINGERPRINT: signing.fingerprint(signing_key)} if signing_key else {}
            version = register.identical_version(client, name, {**tags, **signed})
            if version:
                client.set_tag(r.run_id, contract.TAG_SAME_AS_VERSION, version)
                click.echo(f"{r.variant}: the same files as version {version} (same baseline): not registered again")
            else:
                version = register.register_tflite(client, name, r.run_id, tags, f"{r.variant} TFLite of baseline run {base.run_id}",
                                                   r.bundle, signing_key=signing_key)
            m = r.metrics
            rows.append(report.Row(r.variant, version, m[contract.M_ACCURACY], m[contract.M_DROP], r.size_bytes,
                                   m[contract.M_SIZE_RATIO], m[contract.M_P50], m[contract.M_P90], m[contract.M_SPEEDUP]))

        title = f"{name}: {train.model} on {Path(data.dataset).name}, {data.image_size}px"
        table = report.markdown_table(rows)
        mlflow.log_text(table, "comparison.md")
        mlflow.log_text(report.html_table(rows, title), "comparison.html")
        mlflow.log_artifact(str(report.tradeoff_plot(rows, work / "tradeoff.png", title)))
        # What the run page shows before anyone opens an artifact.
        found = summary.summarize(rows)
        mlflow.log_metrics(found.metrics())
        mlflow.set_tags(found.tags())
        counts = ", ".join(f"{n} {split}" for split, n in info.counts.items())
        dataset_line = f"{Path(data.dataset).name} ({len(info.labels)} classes; {counts}; digest {info.fingerprint}), {data.image_size} px"
        mlflow.set_tag(MLFLOW_RUN_NOTE, summary.description(title, found, rows[0], base.reused, dataset_line, table, name))
        click.echo(f"\n{title}\n{table}")
        click.echo(f"registered model: {name}  ·  pipeline run: {parent.info.run_id}")
        uri = mlflow.get_tracking_uri()
        for label, link in (("runs", ui_links.experiment_url(uri, parent.info.experiment_id)),
                            ("run", ui_links.run_url(uri, parent.info.experiment_id, parent.info.run_id)),
                            ("model", ui_links.model_url(uri, name))):
            if link:
                click.echo(f"{label + ':':<7}{link}")
        return rows


@click.command(context_settings={"show_default": True})
@click.option("--quant", type=click.Choice(QUANT_CHOICES), default=contract.INT8, help="Variant(s) to build; fp32 is always built as the reference.")
@click.option("--dataset", default="cats_vs_dogs", help="cats_vs_dogs, digits, or a path to an image folder (one sub-folder per class).")
@click.option("--data-dir", default=None, help="TFDS data directory.")
@click.option("--image-size", type=int, default=224)
@click.option("--model", "model_arch", default="efficientnet_b0", help="efficientnet_b0 or tiny_cnn.")
@click.option("--weights", default="imagenet",
              help="imagenet, none (train from scratch, offline), or the path of a weights file (efficientnetb0_notop.h5).")
@click.option("--epochs", type=click.IntRange(1), default=15)
@click.option("--batch-size", type=click.IntRange(1), default=16)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-4)
@click.option("--distribute", type=click.Choice(DISTRIBUTE), default="auto",
              help="auto: train under MirroredStrategy when several GPUs are visible (batch size per GPU); off: one device.")
@click.option("--seed", type=int, default=42)
@click.option("--min-test-images", type=click.IntRange(1), default=20)
@click.option("--calibration-images", type=int, default=200, help="Representative images for int8 (at least 100).")
@click.option("--qat-epochs", type=click.IntRange(0), default=2)
@click.option("--qat-learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-5)
@click.option("--sample-size", default=sample_size_mod.AUTO, callback=lambda ctx, param, value: _sample_size(value),
              help="Labelled test images bundled for the device's accuracy gate: auto (enough to refuse a version "
                   "losing more than the accuracy budget with 90 % probability, within a bounded download) or N.")
@click.option("--registered-model", default="", help="Registered model name (default edgeq-<dataset>-<model>).")
@click.option("--selective-if-drop-above", type=float, default=1.0,
              help="Also build the selective variant when int8 loses more accuracy points than this.")
@click.option("--signing-key", envvar=contract.ENV_SIGNING_KEY, type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Ed25519 private key signing each version's manifest (${contract.ENV_SIGNING_KEY}; "
                   "create one with: edgeq keygen PATH).")
def main(quant: str, dataset: str, data_dir: str | None, image_size: int, model_arch: str, weights: str, epochs: int,
         batch_size: int, learning_rate: float, seed: int, min_test_images: int, calibration_images: int,
         qat_epochs: int, qat_learning_rate: float, sample_size: int, registered_model: str,
         selective_if_drop_above: float, signing_key: Path | None, distribute: str) -> None:
    """Train (or reuse) the baseline, build the TFLite variants, evaluate and register each."""
    data = DataConfig(dataset=dataset, image_size=image_size, seed=seed, min_test_images=min_test_images, data_dir=data_dir or None)
    train = TrainConfig(model=model_arch, weights=weights, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                        distribute=distribute)
    quant_cfg = QuantConfig(calibration_images=calibration_images, qat_epochs=qat_epochs,
                            qat_learning_rate=qat_learning_rate, sample_size=sample_size,
                            selective_if_drop_above=selective_if_drop_above)
    try:
        key = signing.load_private_key(signing_key) if signing_key else None
    except signing.SigningKeyError as exc:
        raise PipelineError(str(exc)) from exc
    stop.install()
    try:
        run(quant, data, train, quant_cfg, registered_model or None, signing_key=key)
    except stop.Stopped as exc:
        stop.unwinding()
        click.echo(f"Error: {exc}: the runs it started are marked FAILED", err=True)
        raise SystemExit(exc.exit_code) from None


def entry() -> None:
    """The MLproject's command: ``main``; under `mlflow run`, a stop before the pipeline started the run
    `mlflow run` made (bad input, offline) ends that run FAILED with the line printed."""
    # MLflow prints its own links when a run ends, and they open its GenAI layout: the pipeline prints
    # links that open the runs table (edge/ui_links.py) instead.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    client = MlflowClient()
    try:
        with project_run.failing_before_start(client):
            main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        click.echo("Aborted!", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    entry()
