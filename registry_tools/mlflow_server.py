"""The one launcher of a local ``mlflow server`` (SQLite + served artifacts in one directory), for users, scripts, tests and benchmarks.

    python -m registry_tools.mlflow_server start [--dir .edgeq/server] [--port 5000]   # prints MLFLOW_TRACKING_URI=...
    python -m registry_tools.mlflow_server status|stop [--dir .edgeq/server]
    python -m registry_tools.mlflow_server ping URI                                    # exit 0 when URI answers /health

Standard library only (the edge tier's venv uses it too); ``mlflow`` is the executable next to
this Python (a venv's ``bin/mlflow``), else the one on PATH, else ``--mlflow``. The server runs in a
session of its own, so it outlives ``start`` and ``stop`` ends it with its workers.
Scripts call it: scripts/server.sh (team setups: PostgreSQL, basic-auth), scripts/demo.sh,
scripts/check-arm.sh; tests/ and bench/ import ``MlflowServer``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIR = Path(".edgeq/server")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
PID_FILE = "server.pid"
URI_FILE = "server.uri"  # beside the pid file: where the running server answers
LOG_FILE = "server.log"
# Loopback health checks never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """The server did not start, or did not answer in time (the message ends with its log's tail)."""


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mlflow_executable() -> str:
    """``mlflow`` next to this interpreter (its venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("mlflow")
    if beside.exists():
        return str(beside)
    found = shutil.which("mlflow")
    if not found:
        raise ServerError("mlflow not found next to this Python nor on PATH: run scripts/setup.sh "
                          "(or pip install 'edgeq[server]'), or pass --mlflow PATH")
    return found


def healthy(uri: str, timeout_s: float = 2.0) -> bool:
    """Whether ``uri``/health answers 200."""
    try:
        with _OPENER.open(uri.rstrip("/") + "/health", timeout=timeout_s) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def _client_host(host: str) -> str:
    """Where clients reach a server listening on ``host``: a wildcard address on loopback."""
    return DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host


def uri_of(host: str, port: int) -> str:
    return f"http://{_client_host(host)}:{port}"


class MlflowServer:
    """Start, stop and restart an MLflow server keeping the same store and port.

    Everything lives in ``root``: ``mlflow.db`` (unless ``backend_store_uri`` names another
    store), ``artifacts/``, ``server.log``; ``extra_args`` go to ``mlflow server`` as given
    (``--app-name basic-auth``, ``--allowed-hosts ...``).
    """

    def __init__(self, root: Path, port: int | None = None, backend_store_uri: str | None = None, workers: int = 1,
                 host: str = DEFAULT_HOST, extra_args: Sequence[str] = (), mlflow: str | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.root / 'mlflow.db'}"
        self.workers = workers
        self.host = host
        self.extra_args = tuple(extra_args)
        self.mlflow = mlflow
        self.log = self.root / LOG_FILE
        self.port = port or free_port()
        self.uri = uri_of(host, self.port)
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            self.mlflow or mlflow_executable(), "server", "--host", self.host, "--port", str(self.port),
            "--workers", str(self.workers), "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", str(self.root / "artifacts"), *self.extra_args,
        ]

    def start(self, timeout_s: float = 180) -> "MlflowServer":
        return self.launch().wait_ready(timeout_s)

    def launch(self) -> "MlflowServer":
        """Start the process and return at once (``wait_ready`` waits for it to answer)."""
        # MLflow 3 otherwise starts job-worker processes per server that edgeq never uses.
        env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=env)
        return self

    def wait_ready(self, timeout_s: float = 180) -> "MlflowServer":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServerError(f"mlflow server exited ({self.log}):\n{self.log_tail()}")
            if healthy(self.uri, 1.0):
                return self
            time.sleep(0.3)
        raise ServerError(f"mlflow server did not answer within {timeout_s:g} s ({self.log}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    _log_tail = log_tail  # the name the tests used

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            stop_group(self.proc.pid, lambda: self.proc.poll() is not None)
            self.proc.wait()
        self.proc = None
        wait_port_free(self.host, self.port)


def stop_group(pid: int, gone, timeout_s: float = 20) -> None:
    """SIGTERM the process group led by ``pid`` (the server and its workers), SIGKILL after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if gone():
                return
            time.sleep(0.2)


def wait_port_free(host: str, port: int, timeout_s: float = 20) -> None:
    """Until nothing accepts on ``port`` (a restart on the same port needs it free)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((_client_host(host), port), timeout=0.2):
                time.sleep(0.2)
        except OSError:
            return


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child that exited) is not a server
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


# --- command line ----------------------------------------------------------------------------


def _start(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    pid_file = Path(args.pid_file) if args.pid_file else root / PID_FILE
    uri_file = pid_file.with_name(URI_FILE)
    running = _read_pid(pid_file)
    known = uri_file.read_text().strip() if running and uri_file.is_file() else ""
    if known and healthy(known):  # one server per directory: its store is not shared
        print(f"already running (pid {running}): MLFLOW_TRACKING_URI={known}")
        return 0
    port = args.port or free_port()
    uri = uri_of(args.host, port)
    if healthy(uri):
        print(f"mlflow_server: port {port} already serves something else: choose another --port", file=sys.stderr)
        return 1
    server = MlflowServer(root, port, args.backend_store_uri, args.workers, args.host, args.extra, args.mlflow)
    if args.log:
        server.log = Path(args.log)
    try:
        server.launch()
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{server.proc.pid}\n")
        uri_file.write_text(f"{server.uri}\n")
        server.wait_ready(args.timeout)
    except ServerError as exc:
        if server.proc is not None and server.proc.poll() is None:
            stop_group(server.proc.pid, lambda: server.proc.poll() is not None)
        pid_file.unlink(missing_ok=True)
        uri_file.unlink(missing_ok=True)
        print(f"mlflow_server: {exc}", file=sys.stderr)
        return 1
    print(f"MLFLOW_TRACKING_URI={server.uri}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    pid_file = Path(args.pid_file) if args.pid_file else Path(args.dir) / PID_FILE
    pid = _read_pid(pid_file)
    if pid is not None:
        stop_group(pid, lambda: not _pid_alive(pid))
        print(f"stopped mlflow server (pid {pid})")
    pid_file.unlink(missing_ok=True)
    pid_file.with_name(URI_FILE).unlink(missing_ok=True)
    return 0


def _status(args: argparse.Namespace) -> int:
    pid_file = Path(args.pid_file) if args.pid_file else Path(args.dir) / PID_FILE
    pid = _read_pid(pid_file)
    uri_file = pid_file.with_name(URI_FILE)
    where = f" at {uri_file.read_text().strip()}" if pid and uri_file.is_file() else ""
    print(f"mlflow server: running (pid {pid}){where}" if pid else f"mlflow server: not running ({pid_file})")
    return 0 if pid else 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m registry_tools.mlflow_server", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("start", "start a server in the background; prints MLFLOW_TRACKING_URI=... once it answers"),
                           ("stop", "stop the server started in --dir"), ("status", "exit 0 when it runs, 3 when not")):
        cmd = commands.add_parser(name, help=helptext)
        cmd.add_argument("--dir", default=os.environ.get("EDGEQ_SERVER_DIR", str(DEFAULT_DIR)),
                         help="store, artifacts, log and pid file (default $EDGEQ_SERVER_DIR or .edgeq/server)")
        cmd.add_argument("--pid-file", help="default DIR/server.pid")
        if name == "start":
            cmd.add_argument("--host", default=DEFAULT_HOST)
            cmd.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: any free port")
            cmd.add_argument("--workers", type=int, default=1)
            cmd.add_argument("--backend-store-uri", help="default sqlite:///DIR/mlflow.db")
            cmd.add_argument("--log", help="default DIR/server.log (appended)")
            cmd.add_argument("--mlflow", help="the mlflow executable (default: next to this Python, else on PATH)")
            cmd.add_argument("--timeout", type=float, default=180, help="seconds to wait for /health")
            cmd.add_argument("extra", nargs="*", help="after --: more `mlflow server` options, as given")
    ping = commands.add_parser("ping", help="exit 0 when URI/health answers, 1 when not")
    ping.add_argument("uri")
    commands.add_parser("free-port", help="print a free TCP port on 127.0.0.1")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ping":
        return 0 if healthy(args.uri) else 1
    if args.command == "free-port":
        print(free_port())
        return 0
    try:
        return {"start": _start, "stop": _stop, "status": _status}[args.command](args)
    except ServerError as exc:
        print(f"mlflow_server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
