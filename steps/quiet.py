"""Import TensorFlow without its start-up INFO lines, so an entry point's own output (one line on failure) is what shows."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator

# What TensorFlow writes to fd 2 on import whatever TF_CPP_MIN_LOG_LEVEL says (2.19 and later log through absl before
# anything initialises it): absl's preamble and INFO lines (oneDNN, "Could not find cuda drivers"). W and E lines stay.
_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|I\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: I )"
)
_PACKAGES = r"(tensorflow|tf_keras|keras|tensorflow_datasets|tensorflow_model_optimization|absl|google\.protobuf)"


@contextlib.contextmanager
def _without_info_lines() -> Iterator[None]:
    """fd 2 through a filter that drops _NOISE lines; the rest is passed on at once (a crash still shows its lines)."""
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not _NOISE.match(line):
                    os.write(real, line)

    thread = threading.Thread(target=pump, name="edgeq-quiet-import", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end: the pump reads to its end and stops
        thread.join(timeout=10)
        os.close(real)


def import_tensorflow() -> None:
    """Import TensorFlow quietly and keep it quiet: C++ and Python logs at ERROR, its deprecation warnings off.

    Call before anything imports TensorFlow (an entry point's first lines); errors still show.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=_PACKAGES)
    if "tensorflow" not in sys.modules:
        with _without_info_lines():
            import tensorflow  # noqa: F401
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
