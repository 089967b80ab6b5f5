"""A pipeline stopped by SIGTERM or SIGINT ends its MLflow runs FAILED, each run saying why it failed."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import mlflow

from edge import contract

SIGNALS = (signal.SIGTERM, signal.SIGINT)
REDELIVER_S = 1.0

_received: list[int] = []
_unwinding = threading.Event()  # Stopped reached the pipeline's own handlers: the runs are being ended


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM or SIGINT; a BaseException so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by that signal


def _raise(signum: int, frame) -> None:
    if _unwinding.is_set():
        return  # later signals wait: ending the runs is a few requests, and a second Ctrl-C would cut them short
    if not _received:
        _received.append(signum)
        threading.Thread(target=_redeliver, args=(signum,), name="edgeq-stop", daemon=True).start()
    raise Stopped(signum)


def _redeliver(signum: int) -> None:
    # A handler's exception lands wherever the main thread is, and Python drops one raised inside a finalizer
    # (TensorFlow's __del__ methods run often): the signal comes again until the pipeline is unwinding.
    while not _unwinding.wait(REDELIVER_S):
        os.kill(os.getpid(), signum)


def unwinding() -> None:
    """The pipeline caught Stopped: signals from now on are ignored while the runs end."""
    _unwinding.set()


def install() -> None:
    """From now on SIGTERM and SIGINT unwind the pipeline (every ``with mlflow.start_run`` ends FAILED)."""
    for sig in SIGNALS:
        signal.signal(sig, _raise)


@contextlib.contextmanager
def failure_reason() -> Iterator[None]:
    """Inside ``with mlflow.start_run(...)``: a failure tags the active run with its one-line reason first."""
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, Stopped):
            unwinding()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        with contextlib.suppress(Exception):  # the reason is a courtesy: never hide the failure behind it
            mlflow.set_tag(contract.TAG_FAILURE_REASON, reason[:500])
        raise
