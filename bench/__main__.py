"""Run every benchmark and print the results as markdown: ``python -m bench``."""
from __future__ import annotations

import platform
import time

from bench import calibration, evaluator, latency, loop


def main() -> None:
    start = time.perf_counter()
    sections = [latency.run(), evaluator.run(), calibration.run(), loop.run()]
    print(f"## edgeq benchmarks ({platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')})\n")
    print("\n".join(sections))
    print(f"_total {time.perf_counter() - start:.0f} s_")


if __name__ == "__main__":
    main()
