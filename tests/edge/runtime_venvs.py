"""Virtualenvs holding another TFLite runtime (tflite-runtime 2.14 with NumPy 1 or 2), built once and cached.

They live under ``.edgeq/venvs/`` (gitignored; ``$EDGEQ_TEST_VENVS`` moves them) and get
the wheels from the package index the first time. Where they cannot be built (no index,
no wheel for this Python or CPU) the test using them is skipped with pip's reason.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# name -> what pip installs besides edge's own dependencies (requests, click).
SPECS: dict[str, tuple[str, ...]] = {
    "tflite-runtime-2.14": ("tflite-runtime==2.14.0", "numpy<2"),
    "tflite-runtime-2.14-numpy2": ("tflite-runtime==2.14.0", "numpy>=2"),
}
_BUILD_TIMEOUT_S = 600


def venvs_dir() -> Path:
    return Path(os.environ.get("EDGEQ_TEST_VENVS") or REPO / ".edgeq" / "venvs")


def runtime_python(name: str) -> Path:
    """The python of the cached venv ``name`` (built now if missing); skips the test if it cannot be built."""
    if os.environ.get("EDGEQ_TEST_VENVS") == "off":
        pytest.skip("EDGEQ_TEST_VENVS=off: no extra runtime virtualenvs here")
    specs = (*SPECS[name], "requests>=2.28", "click>=8.1")
    root = venvs_dir()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / name
    python = venv / "bin" / "python"
    stamp = venv / ".edgeq-specs"
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time, across test processes
        if stamp.is_file() and json.loads(stamp.read_text()) == list(specs) and python.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True,
                           timeout=120)
            # Wheels only: a source build of numpy or tflite-runtime is not what a device does.
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--only-binary=:all:", *specs], check=True,
                           capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S)
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(venv, ignore_errors=True)
            reason = [line for line in (exc.stderr or exc.stdout or "").splitlines()
                      if line.strip() and not line.startswith("WARNING")]
            pytest.skip(f"cannot build the {name} virtualenv ({' '.join(specs)}): "
                        f"{reason[-1] if reason else exc}")
        except subprocess.TimeoutExpired:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"building the {name} virtualenv took over {_BUILD_TIMEOUT_S}s (no package index?)")
        stamp.write_text(json.dumps(list(specs)))
        return python


def run_in(python: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python args`` with this checkout's ``edge`` importable, as a device would run it."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("EDGEQ_RUNTIME", None)
    return subprocess.run([str(python), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
