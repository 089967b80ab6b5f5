"""Evaluation worker: one TFLite interpreter in its own light process (no TensorFlow), fed batches over a pipe.

Usage: ``python -m steps.eval_worker MODEL.tflite [RUNTIME]``. Reads image batches from
stdin until EOF and answers each with the predicted classes; every message is a
length-prefixed ``.npy`` (plain arrays, no pickles).
"""
from __future__ import annotations

import io
import os
import struct
import sys
from typing import BinaryIO

import numpy as np

from edge.inference import TFLiteClassifier
from edge.runtime import find_runtime


def send(stream: BinaryIO, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    stream.write(struct.pack("<Q", buf.tell()) + buf.getbuffer())
    stream.flush()


def receive(stream: BinaryIO) -> np.ndarray | None:
    """The next array, or None at end of stream."""
    header = stream.read(8)
    if not header:
        return None
    if len(header) != 8:
        raise EOFError("truncated message")
    size = struct.unpack("<Q", header)[0]
    body = stream.read(size)
    if len(body) != size:
        raise EOFError("truncated message")
    return np.load(io.BytesIO(body), allow_pickle=False)


def main(model_path: str, runtime: str | None = None) -> None:
    # The protocol gets its own copy of stdout; fd 1 then points at stderr, so anything a
    # native library prints cannot corrupt the answers.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    classifier = TFLiteClassifier(model_path, find_runtime(runtime), threads=1)
    while (images := receive(sys.stdin.buffer)) is not None:
        send(out, np.fromiter((classifier.predict(image) for image in images), np.int64, len(images)))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
