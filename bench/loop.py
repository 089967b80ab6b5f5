"""The MLflow loop, timed: baseline reuse across `mlflow run`s, and a puller's first vs no-change run.

A throw-away `mlflow server` on loopback; the offline digits setup of the demo.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from registry_tools.mlflow_server import MlflowServer

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = "edgeq-bench-digits"
PARAMS = ["dataset=digits", "model=tiny_cnn", "weights=none", "image_size=32", "epochs=10", "learning_rate=0.001",
          f"registered_model={MODEL}"]


@dataclass(frozen=True)
class Timed:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def timed(cmd: list[str], env: dict[str, str]) -> Timed:
    """Run to completion through bench.measure: wall time and the command's own peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "measure.json"
        proc = subprocess.run([sys.executable, "-m", "bench.measure", str(report), *cmd], cwd=REPO,
                              env=dict(env, PYTHONPATH=str(REPO)), capture_output=True, text=True)
        measured = json.loads(report.read_text()) if report.exists() else {"seconds": 0.0, "peak_rss_mb": 0.0}
    return Timed(measured["seconds"], measured["peak_rss_mb"], proc.returncode, proc.stdout, proc.stderr)


def _check(t: Timed, what: str) -> Timed:
    if t.returncode != 0:
        raise RuntimeError(f"{what} failed ({t.returncode}): {t.stderr[-2000:]}")
    return t


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        server = MlflowServer(Path(tmp) / "mlflow").start()
        try:
            env = dict(os.environ, MLFLOW_TRACKING_URI=server.uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
                       PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
            mlflow_run = [str(BIN / "mlflow"), "run", str(REPO), "--env-manager", "local", "--experiment-name", "bench"]
            args = [a for p in PARAMS for a in ("-P", p)]
            first = _check(timed([*mlflow_run, "-P", "quant=fp16", *args], env), "first mlflow run")
            second = _check(timed([*mlflow_run, "-P", "quant=dynamic", *args], env), "second mlflow run")
            reused = "reusing baseline run" in second.stdout

            versions = json.loads(_check(timed([str(BIN / "edgeq"), "versions", MODEL, "--json"], env), "edgeq versions").stdout)
            dynamic = max((r for r in versions if r["variant"] == "dynamic"), key=lambda r: int(r["version"]))["version"]
            _check(timed([str(BIN / "edgeq"), "promote", MODEL, dynamic], env), "edgeq promote")
            pull = [str(BIN / "edgeq-pull"), "--model", MODEL, "--device-id", "bench", "--state-dir", f"{tmp}/device"]
            pull_first = _check(timed(pull, env), "first pull")
            pull_again = _check(timed(pull, env), "second pull")
        finally:
            server.stop()

    def downloaded(t: Timed) -> int:
        match = re.search(r"downloaded (\d+) bytes", t.stderr)
        return int(match.group(1)) if match else 0

    return "\n".join([
        "### Baseline reuse (`mlflow run`, digits, tiny CNN 32 px, 10 epochs)",
        "",
        "| run | wall s | ratio |", "|---|---|---|",
        f"| first (`quant=fp16`, trains the baseline) | {first.seconds:.1f} | 1.00× |",
        f"| second (`quant=dynamic`, {'reuses' if reused else 'RETRAINED'} the baseline) | {second.seconds:.1f} | "
        f"{first.seconds / second.seconds:.2f}× faster |",
        "",
        "### Puller (`edgeq-pull`, 100 timed runs after 10 warm-up)",
        "",
        "| run | wall s | bytes downloaded | peak RSS MB |", "|---|---|---|---|",
        f"| first (download, verify, install, benchmark, report) | {pull_first.seconds:.2f} | {downloaded(pull_first)} | {pull_first.peak_rss_mb:.0f} |",
        f"| no change (resolve only) | {pull_again.seconds:.2f} | {downloaded(pull_again)} | {pull_again.peak_rss_mb:.0f} |",
        f"| ratio | {pull_first.seconds / pull_again.seconds:.2f}× | | |",
        "",
    ])


if __name__ == "__main__":
    print(run())
