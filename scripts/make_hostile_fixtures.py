"""Build the hostile bundles checked in under tests/edge/fixtures/hostile/ (needs TensorFlow: run with .venv).

    .venv/bin/python scripts/make_hostile_fixtures.py          # rewrites tests/edge/fixtures/hostile/

Each bundle is internally consistent (manifest sha256s right, labels right, the model
parses with edge.tflite_info), so only running it shows what is wrong with it:

- ``crash``: the fp32 fixture's model plus one SLICE op whose input is a string tensor
  that nothing ever writes. Its data pointer stays NULL (a string tensor is allocated
  only when written; the "input lacks data" check skips it because it has 0 bytes), so
  ``invoke()`` dereferences NULL: SIGSEGV in LiteRT, tflite-runtime 2.14 and TF Lite,
  whether the model is read from a file (mmap) or from bytes.
- ``hang``: a valid model (the usual 1x16x16x3 float32 image in, 10 scores out) with a
  TFLite WHILE loop whose condition never becomes false: ``invoke()`` never returns.
- ``oom``: a valid model (same input and output) that tiles the image 327,680 times:
  ``allocate_tensors()`` reserves a 1 GB arena and ``invoke()`` fills it (peak RSS ~1 GB).
- ``bomb``: the fp32 fixture's model with a ``sample.npz`` of about 1 MB whose honest
  ``images`` header says (1400000, 16, 16, 3) uint8: ``np.load`` inflates it to 1.08 GB.
  (A sample check that reads the .npy header refuses it before anything loads it.)

Also writes ``registry.json``: per kind the version tags (computed from the model, as
the pipeline would) and run metrics (the fp32 fixture's) to register it with.
Reproducible: a rerun writes the same bytes (checked on x86_64, TF 2.21).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from edge import contract  # noqa: E402
from edge.bundle import read_labels, sha256_file  # noqa: E402
from edge.tflite_info import read_info_file  # noqa: E402

FIXTURES = REPO / "tests" / "edge" / "fixtures"
SOURCE_VARIANT = contract.FP32
KINDS = ("crash", "hang", "oom", "bomb")
IMAGE_SIZE = 16
BOMB_IMAGES = 1_400_000  # x 16*16*3 bytes = 1.08 GB once inflated
OOM_TILES = 327_680  # x 16*16*3 float32 = 1.0 GB: over the sandbox's RSS limit, under its address-space cap
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # what numpy's savez writes: no timestamp, so reruns are byte-identical
_CHUNK = 1 << 20

WHAT = {
    "crash": "SLICE of a string tensor nothing writes: NULL dereference, SIGSEGV in invoke()",
    "hang": "WHILE loop whose condition is always true: invoke() never returns",
    "oom": f"TILE of the image x{OOM_TILES}: a 1 GB tensor, allocated by allocate_tensors(), filled by invoke()",
    "bomb": f"sample.npz of ~1 MB whose images ({BOMB_IMAGES}x16x16x3 uint8) inflate to ~1.08 GB",
}


def crash_model(source: Path, dest: Path) -> None:
    """``source`` plus a SLICE op (run first) reading a string tensor that is never written."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(source))
    graph = model.subgraphs[0]

    def tensor(name: bytes, shape: list[int], dtype: int, data: bytes | None = None) -> int:
        buffer = 0  # buffer 0 is the schema's empty sentinel: no constant data
        if data is not None:
            entry = schema.BufferT()
            entry.data = np.frombuffer(data, np.uint8)
            model.buffers.append(entry)
            buffer = len(model.buffers) - 1
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, np.array(shape, np.int32), dtype, buffer
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.SLICE
    code.version = 3  # the version the converter gives a string SLICE
    model.operatorCodes.append(code)
    strings = tensor(b"hostile/unwritten_strings", [2], schema.TensorType.STRING)
    begin = tensor(b"hostile/begin", [1], schema.TensorType.INT32, np.array([0], "<i4").tobytes())
    size = tensor(b"hostile/size", [1], schema.TensorType.INT32, np.array([1], "<i4").tobytes())
    out = tensor(b"hostile/sliced", [1], schema.TensorType.STRING)
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs = np.array([strings, begin, size], np.int32)
    op.outputs = np.array([out], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.SliceOptions
    op.builtinOptions = schema.SliceOptionsT()
    graph.operators.insert(0, op)
    flatbuffer_utils.write_model(model, str(dest))


def hang_model(dest: Path, num_classes: int) -> None:
    """A valid image classifier whose WHILE loop runs forever (i only grows, the condition is i >= 0)."""
    import tensorflow as tf

    weights = tf.constant(np.linspace(-1.0, 1.0, 3 * num_classes, dtype=np.float32).reshape(3, num_classes))

    @tf.function(input_signature=[tf.TensorSpec([1, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="image")])
    def forever(image):
        # The loop result feeds the scores, so the converter cannot prune the loop away.
        _, acc = tf.while_loop(lambda i, acc: i >= 0.0, lambda i, acc: (i + 1.0, acc + 1.0),
                               (tf.constant(0.0), tf.reduce_mean(image)))
        return tf.nn.softmax(tf.matmul(tf.reduce_mean(image, axis=[1, 2]), weights) + acc)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([forever.get_concrete_function()], forever)
    dest.write_bytes(converter.convert())
    if "WHILE" not in {name for name, _ in read_info_file(dest).ops}:
        raise SystemExit("hang: the converter dropped the WHILE loop; the model would not hang")


def oom_model(dest: Path, num_classes: int) -> None:
    """A valid image classifier with a 1 GB intermediate tensor (the image tiled OOM_TILES times)."""
    import tensorflow as tf

    weights = tf.constant(np.linspace(-1.0, 1.0, 3 * num_classes, dtype=np.float32).reshape(3, num_classes))

    @tf.function(input_signature=[tf.TensorSpec([1, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="image")])
    def hungry(image):
        tiled = tf.tile(image, [OOM_TILES, 1, 1, 1])
        return tf.nn.softmax(tf.matmul(tf.reduce_mean(tiled, axis=[0, 1, 2])[None, :], weights))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([hungry.get_concrete_function()], hungry)
    dest.write_bytes(converter.convert())
    if "TILE" not in {name for name, _ in read_info_file(dest).ops}:
        raise SystemExit("oom: the converter dropped the TILE; the model would not need 1 GB")


def write_bomb_sample(path: Path, count: int) -> None:
    """An npz (deflate, like np.savez_compressed) of ``count`` zero images and labels, streamed in chunks.

    The .npy headers are honest: np.load really allocates and inflates all of it.
    """
    shape = (count, IMAGE_SIZE, IMAGE_SIZE, 3)
    with zipfile.ZipFile(path, "w") as archive:
        for name, dtype, dims in (("images", np.dtype(np.uint8), shape), ("labels", np.dtype(np.int64), (count,))):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(
                    member, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": dims})
                remaining = int(np.prod(dims)) * dtype.itemsize
                zeros = bytes(_CHUNK)
                while remaining:
                    step = min(remaining, _CHUNK)
                    member.write(zeros[:step])
                    remaining -= step


def write_manifest(directory: Path, labels: list[str]) -> None:
    """manifest.json exactly as edge.bundle.write_bundle writes it."""
    manifest = {
        "files": {name: sha256_file(directory / name)
                  for name in (contract.MODEL_FILE, contract.LABELS_FILE, contract.SAMPLE_FILE)},
        "labels": labels,
    }
    (directory / contract.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def main(out: Path) -> None:
    from steps.variant import version_tags

    source = FIXTURES / SOURCE_VARIANT
    labels = read_labels(source)
    fixtures = json.loads((FIXTURES / "registry.json").read_text(encoding="utf-8"))
    source_metrics = fixtures["variants"][SOURCE_VARIANT]["metrics"]
    registry: dict = {"source_variant": SOURCE_VARIANT, "kinds": {}}
    with tempfile.TemporaryDirectory() as work:
        models = {kind: Path(work) / f"{kind}.tflite" for kind in ("crash", "hang", "oom")}
        models["bomb"] = source / contract.MODEL_FILE
        crash_model(source / contract.MODEL_FILE, models["crash"])
        hang_model(models["hang"], len(labels))
        oom_model(models["oom"], len(labels))
        for kind in KINDS:
            bundle = out / kind
            shutil.rmtree(bundle, ignore_errors=True)
            bundle.mkdir(parents=True)
            shutil.copyfile(models[kind], bundle / contract.MODEL_FILE)
            shutil.copyfile(source / contract.LABELS_FILE, bundle / contract.LABELS_FILE)
            if kind == "bomb":
                write_bomb_sample(bundle / contract.SAMPLE_FILE, BOMB_IMAGES)
            else:
                shutil.copyfile(source / contract.SAMPLE_FILE, bundle / contract.SAMPLE_FILE)
            write_manifest(bundle, labels)
            model = bundle / contract.MODEL_FILE
            tags = version_tags(SOURCE_VARIANT, model, IMAGE_SIZE, tuple(labels))
            metrics = {**source_metrics, contract.M_SIZE: float(model.stat().st_size)}
            registry["kinds"][kind] = {"what": WHAT[kind], "tags": tags, "metrics": metrics}
            total = sum(f.stat().st_size for f in bundle.iterdir())
            print(f"{kind}: model {model.stat().st_size} bytes, bundle {total} bytes, ops {tags[contract.TAG_OPS]}")
    (out / "registry.json").write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIXTURES / "hostile")
    main(parser.parse_args().out)
