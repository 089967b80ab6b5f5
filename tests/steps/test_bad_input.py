"""Bad input: a clear one-line error before training, non-zero exit, nothing registered."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.contract import ExitCode
from tests.conftest import REPO, background_job, background_result, run_tracked
from tests.images import make_image_folder
from tests.servers import MlflowServer, free_port

SMALL = ["--model", "tiny_cnn", "--weights", "none", "--image-size", "16", "--epochs", "1"]
CASE_TIMEOUT_S = 300


def _folder(root: Path, kind: str) -> str:
    root = root / kind
    if kind == "missing":
        return str(root / "images")  # neither it nor its parent exists
    root.mkdir(parents=True)
    if kind == "one_class":
        make_image_folder(root, per_class=10, classes=("stripes",))
    elif kind == "unreadable":
        make_image_folder(root, per_class=10, classes=("stripes", "checks"))
        (root / "checks" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    elif kind == "too_few":
        make_image_folder(root, per_class=5, classes=("stripes", "checks"))
    elif kind == "untrainable_class":
        make_image_folder(root, per_class=10, classes=("stripes", "checks"))
        make_image_folder(root, per_class=1, classes=("rare",))
        os.symlink(root / "gone.jpg", root / "checks" / "photo.jpg")
    return str(root)


CASES = {
    "unknown quant": (["--quant", "int4", "--dataset", "digits"], "Invalid value for '--quant'"),
    "unknown dataset": (["--dataset", "no-such-dataset"], "unknown dataset 'no-such-dataset'"),
    "dataset path that does not exist": (["--dataset", "@missing"], "/missing/images does not exist"),
    "unknown model": (["--dataset", "digits", "--model", "resnet9000"], "unknown model 'resnet9000'"),
    "empty folder": (["--dataset", "@empty"], "0 class sub-folder(s)"),
    "one-class folder": (["--dataset", "@one_class"], "1 class sub-folder(s)"),
    "unreadable image": (["--dataset", "@unreadable"], "1 unreadable (checks/broken.jpg (not an image"),
    "class with one image and a broken link": (["--dataset", "@untrainable_class"],
                                               "1 not a file (checks/photo.jpg (a broken link)); remove or replace "
                                               "them; 1 class(es) would get no training image: 'rare' has 1"),
    "too few test images": (["--dataset", "@too_few", "--min-test-images", "20"], "only 2 test images"),
    "too few calibration images": (["--dataset", "digits", "--calibration-images", "10"], "at least 100"),
    "pretrained tiny model": (["--dataset", "digits", "--weights", "imagenet"], "tiny_cnn has no pretrained weights"),
}

# Each case is the pipeline's command line in a process of its own: a fork of one process that imported the
# pipeline (TensorFlow: seconds of CPU each) once and ran nothing of it. A child gets its arguments, environment
# and, when offline, both download hosts (TFDS's, Keras' weights') set to a loopback port nothing listens on:
# offline for certain, so no real download starts even where this machine reaches the internet.
_FORKS = r"""
import json, os, signal, sys, time, traceback
import steps.data, steps.model, steps.pipeline

def child(job):
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    os.environ.update(job["env"])
    if job["offline_port"]:
        steps.data._TFDS_HOST = steps.model._WEIGHTS_HOST = ("127.0.0.1", job["offline_port"])
    sys.argv = ["steps.pipeline", *job["args"]]
    code = 0
    try:
        steps.pipeline.main()
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

results = {}
for job in json.loads(sys.stdin.read()):
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(job)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() - start > job["timeout"]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            code = None
            break
        time.sleep(0.05)
    results[job["id"]] = {"returncode": code, "seconds": time.monotonic() - start}
print("RESULTS " + json.dumps(results))
"""


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: killed after CASE_TIMEOUT_S
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class Outcomes:
    cases: dict[str, Outcome]
    tfds_dir: Path  # the offline cats_vs_dogs case's --data-dir
    keras_home: Path  # KERAS_HOME of every case


def _job(work: Path, case_id: str, args: list[str], env: dict[str, str] | None = None, offline: bool = False) -> dict:
    return {"id": case_id, "args": args, "env": env or {}, "offline_port": free_port() if offline else 0,
            "stdout": str(work / f"{case_id}.out"), "stderr": str(work / f"{case_id}.err"), "timeout": CASE_TIMEOUT_S}


@background_job("bad_input", priority=1)
def _bad_input_job(server: MlflowServer, work: Path) -> Outcomes:
    tfds_dir, keras_home = work / "tfds", work / "keras-home"
    tfds_dir.mkdir()
    keras_home.mkdir()
    jobs = []
    for case, (args, _) in CASES.items():
        slug = case.replace(" ", "-")
        args = [_folder(work / slug, a[1:]) if a.startswith("@") else a for a in args]
        jobs.append(_job(work, slug, [*SMALL, *args, "--registered-model", f"edgeq-bad-{slug}"]))
    jobs.append(_job(work, "no-server", [*SMALL, "--dataset", "digits"],
                     env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}))
    jobs.append(_job(work, "offline-cats", [*SMALL, "--dataset", "cats_vs_dogs", "--data-dir", str(tfds_dir)], offline=True))
    jobs.append(_job(work, "offline-imagenet", ["--model", "efficientnet_b0", "--weights", "imagenet", "--dataset", "digits"],
                     offline=True))
    # Keras reads KERAS_HOME when imported: set before the import, for every case.
    env = dict(os.environ, MLFLOW_TRACKING_URI=server.uri, MLFLOW_EXPERIMENT_NAME="edgeq-tests", PYTHONPATH=str(REPO),
               KERAS_HOME=str(keras_home))
    proc = run_tracked([sys.executable, "-c", _FORKS], input=json.dumps(jobs), cwd=REPO, env=env,
                       timeout=CASE_TIMEOUT_S * (len(jobs) + 1))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = json.loads(lines[-1].removeprefix("RESULTS "))
    cases = {job["id"]: Outcome(results[job["id"]]["returncode"], Path(job["stdout"]).read_text(errors="replace"),
                                Path(job["stderr"]).read_text(errors="replace"), results[job["id"]]["seconds"])
             for job in jobs}
    return Outcomes(cases, tfds_dir, keras_home)


@pytest.fixture(scope="module")
def bad_input(request: pytest.FixtureRequest, server: MlflowServer) -> Outcomes:
    return background_result(request, "bad_input")


def _last_line(outcome: Outcome) -> str:
    lines = outcome.stderr.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_fast_with_one_line(case, bad_input, client):
    _, expected = CASES[case]
    slug = case.replace(" ", "-")
    proc = bad_input.cases[slug]
    assert proc.returncode == ExitCode.BAD_CONFIG, proc.stderr[-2000:]
    assert expected in _last_line(proc), proc.stderr[-2000:]
    assert "Epoch" not in proc.stdout + proc.stderr
    assert not client.search_registered_models(f"name = 'edgeq-bad-{slug}'")


def test_missing_tracking_server_is_one_line(bad_input):
    proc = bad_input.cases["no-server"]
    assert proc.returncode == ExitCode.UNREACHABLE, proc.stderr[-2000:]
    assert "is not reachable" in _last_line(proc)


def test_offline_cats_vs_dogs_fails_within_seconds(bad_input):
    proc = bad_input.cases["offline-cats"]
    assert proc.returncode == ExitCode.BAD_CONFIG, proc.stderr[-2000:]
    last = _last_line(proc)
    # The host named is the unreachable one set above: the check ran against it, not the internet.
    assert "cats_vs_dogs is not prepared" in last and "127.0.0.1 is unreachable" in last, last
    assert proc.seconds < 60
    assert not any(bad_input.tfds_dir.iterdir()), "something was downloaded or prepared"


def test_offline_imagenet_weights_fail_clearly(bad_input):
    proc = bad_input.cases["offline-imagenet"]
    assert proc.returncode == ExitCode.BAD_CONFIG, proc.stderr[-2000:]
    last = _last_line(proc)
    assert "ImageNet weights are not cached" in last and "127.0.0.1 is unreachable" in last, last
    assert not list(bad_input.keras_home.rglob("*.h5")), "weights were downloaded"
