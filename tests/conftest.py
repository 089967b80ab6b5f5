"""Session fixtures: one real MLflow server, one tiny pipeline run registering every variant, costly runs in the background."""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from edge import contract
from tests.servers import MlflowServer

REPO = Path(__file__).resolve().parent.parent
MODEL_NAME = "edgeq-test-digits"

# The tiny offline setup every pipeline test shares: digits, a small CNN, 16 px.
PIPELINE_ARGS = [
    "--dataset", "digits", "--model", "tiny_cnn", "--weights", "none", "--image-size", "16",
    "--epochs", "10", "--learning-rate", "0.001", "--qat-epochs", "1", "--qat-learning-rate", "0.0001",
    "--calibration-images", "100", "--sample-size", "16", "--registered-model", MODEL_NAME,
]
SUBPROCESS_TIMEOUT_S = 1800  # a pipeline run; far above the longest (about 90 s on a busy 2-core machine)


_SERVER = pytest.StashKey[MlflowServer]()


def _launch(config: pytest.Config) -> MlflowServer:
    srv = config.stash[_SERVER] = MlflowServer(Path(tempfile.mkdtemp(prefix="edgeq-mlflow-"))).launch()
    return srv


# --- background jobs ----------------------------------------------------------------------------------------------
# A pipeline run is mostly one busy core for a minute or more, while most tests leave the second core idle:
# the runs a selected test will need start as soon as collection is done, one at a time, and the fixtures
# await them. A job's failure (an assertion on its subprocess) is raised by the fixture that awaits it.
# Priorities follow the order a full run needs them in: team -3 (tests/scripts/test_team_server.py), folded -2
# (test_bn_fold), mirrored -1 (test_distribute), pipeline 0, bad_input 1 (test_bad_input), folder_run 2, pipeline_rerun 3.


@dataclass(frozen=True)
class _Job:
    name: str  # the fixture that awaits it (also its work directory)
    priority: int  # lower starts earlier; a job may rely on every job of lower priority having finished
    run: Callable[[MlflowServer | None, Path], Any]
    needs_server: bool  # whether ``run`` gets the session's server (else None)
    after: tuple[str, ...]  # jobs whose results it relies on (of lower priority; never run in the foreground)


_JOBS: dict[str, _Job] = {}


def background_job(name: str, priority: int, needs_server: bool = True, after: tuple[str, ...] = ()) -> Callable:
    """Register ``fn(server, work_dir) -> result`` as the body of fixture ``name``, which returns
    ``background_result(request, name)``; ``server`` is the session's (None unless ``needs_server``). A job
    listing others in ``after`` runs once they succeeded; its fixture must request theirs."""

    def register(fn: Callable[[MlflowServer | None, Path], Any]) -> Callable[[MlflowServer | None, Path], Any]:
        assert all(_JOBS[first].priority < priority for first in after), f"{name}: {after} must start first"
        _JOBS[name] = _Job(name, priority, fn, needs_server, after)
        return fn

    return register


@dataclass
class _Background:
    root: Path
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="edgeq-background"))
    futures: dict[str, Future] = field(default_factory=dict)

    def work_dir(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))


_BACKGROUND = pytest.StashKey[_Background]()
_PROCS: set[subprocess.Popen] = set()  # running under run_tracked, killed when the session ends early
_PROCS_LOCK = threading.Lock()
_CLOSING = threading.Event()
_AT_END: list[Callable[[], None]] = []  # what background jobs started and their fixtures may never stop


def at_session_end(fn: Callable[[], None]) -> None:
    """Call ``fn`` when the session ends (after the background jobs): for what a job leaves running."""
    with _PROCS_LOCK:
        _AT_END.append(fn)


def _background(config: pytest.Config) -> _Background:
    if _BACKGROUND not in config.stash:
        config.stash[_BACKGROUND] = _Background(Path(tempfile.mkdtemp(prefix="edgeq-background-")))
    return config.stash[_BACKGROUND]


def background_result(request: pytest.FixtureRequest, name: str) -> Any:
    """The result of job ``name``: awaited if it runs in the background, else (not started yet) run now."""
    bg = _background(request.config)
    waited_for = {first for job in _JOBS.values() for first in job.after}
    if name in bg.futures and (name in waited_for or not bg.futures[name].cancel()):
        return bg.futures[name].result()
    job = _JOBS[name]
    return job.run(request.getfixturevalue("server") if job.needs_server else None, bg.work_dir(name))


def _start_jobs(config: pytest.Config, items: list[pytest.Item]) -> None:
    needed = {name for item in items for name in getattr(item, "fixturenames", ()) if name in _JOBS}
    if not needed:
        return
    bg = _background(config)
    srv = config.stash.get(_SERVER, None)  # launched when a selected test uses it (a job needing it: its fixture does)

    def call(job: _Job) -> Any:
        for first in job.after:  # one thread, by priority: finished already; raises what made it fail
            bg.futures[first].result()
        return job.run(srv.wait_ready() if job.needs_server else None, bg.work_dir(job.name))

    for job in sorted((_JOBS[name] for name in needed), key=lambda job: job.priority):
        bg.futures[job.name] = bg.pool.submit(call, job)


def _stop_jobs(config: pytest.Config) -> None:
    """Cancel the jobs not started, kill the running one's processes, wait for the thread."""
    bg = config.stash.get(_BACKGROUND, None)
    if bg is None:
        return
    _CLOSING.set()
    for future in bg.futures.values():
        future.cancel()
    with _PROCS_LOCK:
        for proc in _PROCS:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    bg.pool.shutdown(wait=True, cancel_futures=True)
    while _AT_END:
        _AT_END.pop()()


def run_tracked(cmd: list[str], timeout: float = SUBPROCESS_TIMEOUT_S, input: str | None = None,
                **kw) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, input=input, capture_output=True, text=True, **kw)`` in a session of its own, killed
    with its children when the test session ends first (a background job outliving its session would hold the server)."""
    with _PROCS_LOCK:
        if _CLOSING.is_set():
            raise RuntimeError("the test session is ending")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)
        _PROCS.add(proc)
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += f"\n(killed after {timeout:g} s)"
    finally:
        with _PROCS_LOCK:
            _PROCS.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


# --- the server -----------------------------------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected what will not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the session's server and the background jobs the selected tests need now, and run the modules that
    never use the server first, while it starts."""
    if config.option.collectonly:
        return
    uses = {item.nodeid.split("::")[0] for item in items if "server" in getattr(item, "fixturenames", ())}
    if uses:
        # Whole modules move, so module-scoped fixtures are still set up once.
        items[:] = sorted(items, key=lambda item: item.nodeid.split("::")[0] in uses)
        _launch(config)
    _start_jobs(config, items)


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop_jobs(config)
    srv = config.stash.get(_SERVER, None)
    if srv is not None:
        srv.stop()
        shutil.rmtree(srv.root, ignore_errors=True)
    bg = config.stash.get(_BACKGROUND, None)
    if bg is not None:
        shutil.rmtree(bg.root, ignore_errors=True)


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest) -> MlflowServer:
    srv = request.config.stash.get(_SERVER, None)
    if srv is None:  # asked for by a test the collection did not see (getfixturevalue)
        srv = _launch(request.config)
    yield srv.wait_ready()
    _stop_jobs(request.config)  # nothing may still write to it
    srv.stop()


def run_pipeline(uri: str, *args: str, experiment: str = "edgeq-tests") -> subprocess.CompletedProcess:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=experiment, PYTHONPATH=str(REPO))
    return run_tracked([sys.executable, "-m", "steps.pipeline", *args], cwd=REPO, env=env)


def mlflow_run(uri: str, experiment: str, params: dict[str, Any]) -> subprocess.CompletedProcess:
    """`mlflow run` of this checkout (the user's command) with ``-P key=value`` for each parameter."""
    # As in an activated virtualenv: `mlflow run --env-manager local` runs the `python` on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, PATH=path)
    return run_tracked([str(Path(sys.executable).with_name("mlflow")), "run", str(REPO), "--env-manager", "local",
                        "--experiment-name", experiment, *[a for k, v in params.items() for a in ("-P", f"{k}={v}")]],
                       cwd=REPO, env=env)


@dataclass(frozen=True)
class PipelineRun:
    uri: str
    output: str
    versions: dict[str, str]  # variant -> version


@background_job("pipeline", priority=0)
def _pipeline_job(server: MlflowServer, work: Path) -> PipelineRun:
    proc = run_pipeline(server.uri, "--quant", "all", *PIPELINE_ARGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri, registry_uri=server.uri)
    versions = {mv.tags["variant"]: str(mv.version) for mv in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    return PipelineRun(server.uri, proc.stdout, versions)


@pytest.fixture(scope="session")
def pipeline(request: pytest.FixtureRequest, server: MlflowServer) -> PipelineRun:
    """`quant=all` once for the whole session."""
    return background_result(request, "pipeline")


RERUN_MODEL = "edgeq-test-selective"


@dataclass(frozen=True)
class Rerun:
    proc: subprocess.CompletedProcess
    model: str  # its registered model


@background_job("pipeline_rerun", priority=3, after=("pipeline",))  # the baseline this run reuses
def _rerun_job(server: MlflowServer, work: Path) -> Rerun:
    params = {"quant": contract.INT8, "selective_if_drop_above": -100}
    it = iter(PIPELINE_ARGS)
    for flag, value in zip(it, it):
        params.setdefault(flag[2:].replace("-", "_"), value)
    params["registered_model"] = RERUN_MODEL
    return Rerun(mlflow_run(server.uri, "edgeq-tests", params), RERUN_MODEL)


@pytest.fixture(scope="session")
def pipeline_rerun(request: pytest.FixtureRequest, pipeline: PipelineRun) -> Rerun:
    """`mlflow run` with the session's data and training but quant=int8 and an int8 budget it cannot meet
    (-100 points): reuses the session's baseline and builds the selective variant too."""
    return background_result(request, "pipeline_rerun")


FOLDER_MODEL = "edgeq test folder"  # a space in the registered model's name too
FOLDER_EXPERIMENT = "edgeq-tests-folder"


@dataclass(frozen=True)
class FolderRun:
    uri: str
    data: Path  # the image folder ("my images": a space in its path)
    data_dir: Path  # the TFDS directory passed along (a space too; unused by an image folder)
    proc: subprocess.CompletedProcess
    versions: dict[str, Any]  # variant -> ModelVersion


@background_job("folder_run", priority=2)
def _folder_job(server: MlflowServer, work: Path) -> FolderRun:
    from tests.images import make_image_folder

    data = make_image_folder(work / "my images", per_class=200)
    data_dir = work / "tfds data"
    params = {"quant": "all", "dataset": str(data), "data_dir": str(data_dir), "model": "tiny_cnn", "weights": "none",
              "image_size": 32, "epochs": 8, "learning_rate": 0.001, "qat_epochs": 1, "qat_learning_rate": 0.0001,
              "calibration_images": 100, "min_test_images": 20, "sample_size": "auto", "registered_model": FOLDER_MODEL}
    proc = mlflow_run(server.uri, FOLDER_EXPERIMENT, params)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri, registry_uri=server.uri)
    versions = {mv.tags[contract.TAG_VARIANT]: mv for mv in client.search_model_versions(f"name = '{FOLDER_MODEL}'")}
    return FolderRun(server.uri, data, data_dir, proc, versions)


@pytest.fixture(scope="session")
def folder_run(request: pytest.FixtureRequest, server: MlflowServer) -> FolderRun:
    """`mlflow run` with quant=all on a generated image folder whose path, and model name, hold spaces; the
    gate's sample sized automatically."""
    return background_result(request, "folder_run")


@pytest.fixture()
def client(server):
    from mlflow.tracking import MlflowClient

    return MlflowClient(server.uri, registry_uri=server.uri)


@pytest.fixture(scope="session")
def bundles(pipeline, tmp_path_factory) -> dict[str, Path]:
    """variant -> a local copy of that version's device files, as the pipeline registered them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(pipeline.uri, registry_uri=pipeline.uri)
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for variant in contract.VARIANTS:
        mv = client.get_model_version(MODEL_NAME, pipeline.versions[variant])
        out[variant] = Path(client.download_artifacts(mv.run_id, contract.ARTIFACT_DIR, str(root / variant)))
    return out


_names = itertools.count(1)


@pytest.fixture()
def fresh_model(pipeline, client) -> str:
    """A fresh registered model for one test, so aliases set here never touch other tests."""
    name = f"edgeq-test-model-{next(_names)}"
    client.create_registered_model(name)
    return name


def copy_version(client, pipeline, name: str, variant: str, source: str | None = None, run_id: str | None = None,
                 **tag_overrides: str) -> str:
    """Register the pipeline's ``variant`` version again under ``name`` (optionally with other tags or files)."""
    src = client.get_model_version(MODEL_NAME, pipeline.versions[variant])
    tags = {**src.tags, **tag_overrides}
    source = source or src.source
    # A logged model as source (the pipeline's versions): the server wants its id alongside.
    model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
    mv = client.create_model_version(name, source=source, run_id=run_id or src.run_id, tags=tags, model_id=model_id)
    return str(mv.version)


def version_in_own_run(client, pipeline, name: str, variant: str, bundle: Path, metrics: dict[str, float] | None = None,
                       **tag_overrides: str) -> str:
    """Register ``bundle`` as a version of ``name`` whose source is a new run of its own (with ``metrics``),
    tagged like the pipeline's ``variant`` version apart from ``tag_overrides``."""
    src = client.get_model_version(MODEL_NAME, pipeline.versions[variant])
    run = client.create_run(client.get_run(src.run_id).info.experiment_id)
    client.log_artifacts(run.info.run_id, str(bundle), contract.ARTIFACT_DIR)
    for key, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return copy_version(client, pipeline, name, variant, source=f"{run.info.artifact_uri}/{contract.ARTIFACT_DIR}",
                        run_id=run.info.run_id, **tag_overrides)
