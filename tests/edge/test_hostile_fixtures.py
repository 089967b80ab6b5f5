"""Hostile bundles do what they claim: crash kills the runtime, hang never returns, oom needs 1 GB, bomb inflates."""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge import contract
from edge.bundle import load_sample, read_labels, sha256_file, verify_bundle
from edge.tflite_info import read_info_file
from tests.edge.hostile import hostile_bundle, hostile_kinds, hostile_metrics, hostile_tags, register_hostile
from tests.edge.registry_rest import fixture_bundle
from tests.edge.runtime_venvs import REPO, runtime_python

KINDS = ("crash", "hang", "oom", "bomb")
LOAD_TIMEOUT_S = 15  # interpreter import and creation, on a busy machine
HANG_WAIT_S = 4  # the good fixture's invoke takes well under a millisecond
CRASH_TIMEOUT_S = 20
MAX_BUNDLE_BYTES = {"crash": 200_000, "hang": 200_000, "oom": 200_000, "bomb": 2_000_000}
DATA_LIMIT_BYTES = 512 << 20  # the good fixture runs in ~50 MB; the oom model's arena alone is 1 GB

# What the device does with a candidate: create the interpreter, allocate, invoke once.
HARNESS = """
import sys
import numpy as np
from edge.inference import TFLiteClassifier
classifier = TFLiteClassifier(sys.argv[1])
print("loaded", classifier.runtime.label, flush=True)
classifier.predict(np.zeros(classifier.input_shape[1:], np.uint8))
print("invoked", flush=True)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("EDGEQ_RUNTIME", None)  # whichever runtime the python at hand has
    return env


def _run(model: Path, python: str = sys.executable, data_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if data_limit is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))

    return subprocess.run([python, "-c", HARNESS, str(model)], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=CRASH_TIMEOUT_S, preexec_fn=limit)


def _still_running_after_load(model: Path, python: str = sys.executable) -> tuple[bool, str]:
    """(whether invoke() was still running HANG_WAIT_S after the interpreter was ready, stdout); always kills it."""
    proc = subprocess.Popen([python, "-c", HARNESS, str(model)], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        first = ""
        if select.select([proc.stdout], [], [], LOAD_TIMEOUT_S)[0]:
            first = proc.stdout.readline()
        if not first.startswith("loaded"):
            return False, first
        try:
            proc.wait(timeout=HANG_WAIT_S)
        except subprocess.TimeoutExpired:
            return True, first
        return False, first + proc.stdout.read()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _npy_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) read from the member's .npy header, without inflating its data."""
    with archive.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
        return shape, dtype, fh.tell()


@pytest.mark.parametrize("kind", KINDS)
def test_every_hostile_bundle_is_internally_consistent(kind):
    bundle = hostile_bundle(kind)
    tags = hostile_tags(kind)
    model = bundle / contract.MODEL_FILE
    manifest = json.loads((bundle / contract.MANIFEST_FILE).read_text(encoding="utf-8"))
    assert set(manifest["files"]) == {contract.MODEL_FILE, contract.LABELS_FILE, contract.SAMPLE_FILE}
    assert all(sha256_file(bundle / name) == sha for name, sha in manifest["files"].items())
    if kind != "bomb":  # the bomb's sample is refused by a check of its header (see the bomb's test)
        verify_bundle(bundle, tags[contract.TAG_SHA256])  # only running the model tells what is wrong with it
    assert manifest["labels"] == read_labels(bundle)
    assert tags[contract.TAG_SHA256] == sha256_file(model)
    assert tags[contract.TAG_SIZE_BYTES] == str(model.stat().st_size)
    assert hostile_metrics(kind)[contract.M_SIZE] == model.stat().st_size
    assert tags[contract.TAG_LABELS] == ",".join(read_labels(bundle))
    assert tags[contract.TAG_OPS] == read_info_file(model).ops_text  # the device parses it before running it
    assert tags[contract.TAG_INPUT_SHAPE] == "1x16x16x3" and tags[contract.TAG_INPUT_DTYPE] == "float32"
    assert sum(f.stat().st_size for f in bundle.iterdir()) < MAX_BUNDLE_BYTES[kind]
    assert set(hostile_kinds()) == set(KINDS)


def test_the_harness_runs_a_good_model_to_the_end():
    """Control: without it a harness that always crashes or stalls would make the tests below pass."""
    result = _run(fixture_bundle(contract.FP32) / contract.MODEL_FILE)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "invoked" in result.stdout
    assert _still_running_after_load(fixture_bundle(contract.FP32) / contract.MODEL_FILE)[0] is False


def test_crash_kills_the_runtime_with_a_signal():
    result = _run(hostile_bundle("crash") / contract.MODEL_FILE)
    assert result.returncode < 0, f"exit {result.returncode}, expected death by signal: {result.stderr[-2000:]}"
    assert "loaded" in result.stdout and "invoked" not in result.stdout, result.stdout
    assert -result.returncode in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT)


def test_model_hostile_bundles_carry_the_good_fixtures_sample():
    """Only the model is hostile: the sample is the fp32 fixture's, so a device gets as far as running it."""
    images, labels = load_sample(fixture_bundle(contract.FP32))
    for kind in ("crash", "hang", "oom"):
        got_images, got_labels = load_sample(hostile_bundle(kind))
        assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)


def test_hang_never_returns_from_invoke():
    still_running, stdout = _still_running_after_load(hostile_bundle("hang") / contract.MODEL_FILE)
    assert stdout.startswith("loaded"), f"the interpreter did not even load: {stdout!r}"
    assert still_running, f"invoke() returned: {stdout!r}"


def _data_limit_enforced() -> bool:
    """Whether a process under a 64 MB RLIMIT_DATA really fails to allocate 256 MB on this machine."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_DATA, (64 << 20, 64 << 20))\n"
            "try:\n    bytearray(256 << 20)\nexcept MemoryError:\n    raise SystemExit(3)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=CRASH_TIMEOUT_S).returncode == 3


def test_oom_declares_a_1_gb_tensor_and_cannot_load_under_a_512_mb_data_limit():
    code = ("import sys, numpy as np; from edge.inference import TFLiteClassifier; "
            "details = TFLiteClassifier(sys.argv[1]).interpreter.get_tensor_details(); "
            "print(max(int(np.prod(d['shape'])) * np.dtype(d['dtype']).itemsize for d in details))")
    declared = subprocess.run([sys.executable, "-c", code, str(hostile_bundle("oom") / contract.MODEL_FILE)],
                              cwd=REPO, env=_env(), capture_output=True, text=True, timeout=CRASH_TIMEOUT_S)
    assert declared.returncode == 0, declared.stderr[-2000:]
    assert int(declared.stdout.split()[-1]) > 900_000_000  # reserved by allocate_tensors (untouched: no RSS here)
    good = _run(fixture_bundle(contract.FP32) / contract.MODEL_FILE, data_limit=DATA_LIMIT_BYTES)
    assert good.returncode == 0 and "invoked" in good.stdout, good.stderr[-2000:]
    if not _data_limit_enforced():
        pytest.skip("RLIMIT_DATA is not enforced here (QEMU user mode keeps guest limits off the host); "
                    "the sandbox's resident-memory watch still bounds it (test_sandbox.py)")
    hungry = _run(hostile_bundle("oom") / contract.MODEL_FILE, data_limit=DATA_LIMIT_BYTES)
    assert hungry.returncode != 0 and "invoked" not in hungry.stdout, hungry.stdout


def test_bomb_sample_is_small_on_disk_and_honestly_huge_inflated():
    path = hostile_bundle("bomb") / contract.SAMPLE_FILE
    assert path.stat().st_size < 2_000_000
    with zipfile.ZipFile(path) as archive:
        shape, dtype, header = _npy_header(archive, "images.npy")
        assert dtype == np.uint8 and shape[1:] == (16, 16, 3)
        claimed = int(np.prod(shape)) * dtype.itemsize
        assert claimed > 500_000_000
        assert archive.getinfo("images.npy").file_size == header + claimed  # honest: that much really inflates
        label_shape, label_dtype, _ = _npy_header(archive, "labels.npy")
        assert label_dtype == np.int64 and label_shape == (shape[0],)
    with np.load(path, allow_pickle=False) as data:  # inflates the 11 MB of labels only, never the images
        labels = data["labels"]
    assert labels.min() >= 0 and labels.max() < len(read_labels(hostile_bundle("bomb")))
    assert hostile_tags("bomb")[contract.TAG_SHA256] == sha256_file(fixture_bundle(contract.FP32) / contract.MODEL_FILE)


@pytest.mark.slow
def test_crash_and_hang_with_tflite_runtime_2_14():
    """The 32-bit Pi's runtime: the same bundles crash and hang it too."""
    python = str(runtime_python("tflite-runtime-2.14"))
    result = _run(hostile_bundle("crash") / contract.MODEL_FILE, python)
    assert "loaded tflite-runtime" in result.stdout, result.stderr[-2000:]
    assert result.returncode < 0, f"exit {result.returncode}, expected death by signal: {result.stderr[-2000:]}"
    assert _still_running_after_load(hostile_bundle("hang") / contract.MODEL_FILE, python)[0]


def test_register_hostile_registers_the_bundle_with_its_own_tags(rest, fresh_model):
    registered = register_hostile(rest, fresh_model, "crash")
    assert rest.version_tags(registered.name, registered.version) == hostile_tags("crash")
    assert rest.run_metrics(registered.run_id) == hostile_metrics("crash")
