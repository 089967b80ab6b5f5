"""The ``--on-change`` hook: tell the app on the device that a new model is current."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

_OUTPUT_KEPT = 2000


@dataclass(frozen=True)
class HookResult:
    exit_code: int | None  # None: killed at the timeout
    output: str  # the tail of stdout and stderr together

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        status = "timed out" if self.exit_code is None else f"exit {self.exit_code}"
        last = self.output.strip().splitlines()[-1:] if self.output.strip() else []
        return status + (f": {last[0][:200]}" if last else "")


def run_hook(command: str, env: dict[str, str], timeout_s: float) -> HookResult:
    """Run ``command`` through the shell with ``env`` added to the environment."""
    try:
        proc = subprocess.run(command, shell=True, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s,
                              start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode("utf-8", "replace") if isinstance(exc.output, bytes) else (exc.output or "")
        return HookResult(None, out[-_OUTPUT_KEPT:])
    return HookResult(proc.returncode, proc.stdout.decode("utf-8", "replace")[-_OUTPUT_KEPT:])
