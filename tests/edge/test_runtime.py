"""Finding the runtime and comparing minimum runtime versions."""
import os
import platform
import subprocess
import sys

import pytest

from edge.runtime import Runtime, find_runtime, parse_version, tf_equivalent
from tests.conftest import REPO


def test_parse_version_pads_and_ignores_suffixes():
    assert parse_version("2.14") == (2, 14, 0)
    assert parse_version("2.21.0rc1") == (2, 21, 0)
    assert parse_version("1.5.0") < parse_version("2.14.0") < parse_version("2.20.0")


def test_litert_maps_to_the_tensorflow_release_it_was_cut_from():
    assert tf_equivalent("ai-edge-litert", "2.3.0") == "2.20.0"
    assert tf_equivalent("ai-edge-litert", "1.4.0") == "2.18.0"
    assert tf_equivalent("tflite-runtime", "2.14.0") == "2.14.0"


def test_supports_compares_with_the_tf_equivalent():
    old = Runtime("tflite-runtime", "2.14.0", "2.14.0", object)
    assert old.supports("2.14.0") and old.supports("1.5.0") and old.supports(None)
    assert not old.supports("2.17.0")


def test_ai_edge_litert_is_preferred():
    from edge.runtime import package_version

    if package_version("ai-edge-litert") == "unknown":
        pytest.skip("ai-edge-litert is not installed here (32-bit ARM has no wheels)")
    assert find_runtime().package == "ai-edge-litert"


# Runs find_runtime in a fresh interpreter where neither runtime can be imported, whatever
# this machine has installed, and prints what it raised.
_NO_RUNTIME = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('ai_edge_litert', 'tflite_runtime'):
            raise ImportError('blocked by the test: ' + name)
sys.meta_path.insert(0, Block())
from edge.runtime import RuntimeMissingError, find_runtime
try:
    runtime = find_runtime(sys.argv[1] or None)
except RuntimeMissingError as exc:
    print(type(exc).__name__, exc)
else:
    print('FOUND', runtime.label)
"""


_32_BIT_ARM = platform.machine().startswith("armv")


@pytest.mark.parametrize("preferred, install", [
    # 32-bit ARM has no LiteRT wheels: the advice there is the Debian NumPy + tflite-runtime recipe.
    ("", "--system-site-packages" if _32_BIT_ARM else "pip install ai-edge-litert"),
    ("tflite-runtime", 'pip install "tflite-runtime=='),
])
def test_missing_runtime_names_what_to_install(preferred, install):
    env = {k: v for k, v in os.environ.items() if k != "EDGEQ_RUNTIME"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _NO_RUNTIME, preferred], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.startswith("RuntimeMissingError no TFLite runtime found"), proc.stdout + proc.stderr
    assert install in proc.stdout, proc.stdout


def test_the_probe_model_is_a_tflite_model_the_installed_runtime_runs():
    """find_runtime checks each runtime with this empty model; it must be a real model, not a failure on any runtime."""
    from edge.runtime import _PROBE_MODEL
    from edge.tflite_info import read_info

    assert read_info(_PROBE_MODEL).ops == ()
    find_runtime().check()


def test_tflite_runtime_with_numpy_2_says_what_is_wrong_and_how_to_fix_it(tmp_path):
    """Issue 8 #11: the runtime used to fail later with '... returned a result with an exception set'."""
    from tests.edge.runtime_venvs import run_in, runtime_python

    python = runtime_python("tflite-runtime-2.14-numpy2")
    proc = run_in(python, "-c", "from edge.cli import main; main()", "--tracking-uri", "http://127.0.0.1:9",
                  "--model", "m", "--state-dir", str(tmp_path / "state"), "--device-id", "d")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert 'pip install "numpy<2"' in out and "_ARRAY_API" in out and "NumPy 2." in out, out
    assert "exception set" not in out and "Traceback" not in out, out
    assert len(out.strip().splitlines()) == 1, out

    found = run_in(python, "-c", "from edge.runtime import RuntimeIncompatibleError, find_runtime\n"
                                 "try:\n    find_runtime()\nexcept RuntimeIncompatibleError as exc:\n    print('caught', exc)")
    assert found.stdout.startswith("caught tflite-runtime 2.14.0 was built for NumPy 1.x"), found.stdout + found.stderr
