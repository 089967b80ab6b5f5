"""A stop signal is never lost: one swallowed where it landed (a finalizer) comes again."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from steps import stop


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped one, as in the pipeline
def test_a_signal_swallowed_by_a_finalizer_comes_again(monkeypatch):
    monkeypatch.setattr(stop, "_received", [])
    monkeypatch.setattr(stop, "_unwinding", threading.Event())
    before = {sig: signal.getsignal(sig) for sig in stop.SIGNALS}

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler's Stopped is raised here, and Python drops it

    try:
        stop.install()
        with pytest.raises(stop.Stopped, match="stopped by SIGTERM"):
            Finalized()
            time.sleep(10 * stop.REDELIVER_S)
    finally:
        stop.unwinding()
        for thread in threading.enumerate():
            if thread.name == "edgeq-stop":
                thread.join()
        for sig, handler in before.items():
            signal.signal(sig, handler)
