"""Accuracy against latency for every version, per device, with the Pareto front marked."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from registry_tools.versions import VersionRow, devices  # noqa: E402


def pareto_front(points: list[tuple[str, float, float]]) -> set[str]:
    """Keys of (key, latency, accuracy) points no other point beats on both axes."""
    front = set()
    for key, lat, acc in points:
        dominated = any(
            (l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for k2, l2, a2 in points if k2 != key
        )
        if not dominated:
            front.add(key)
    return front


def series(rows: list[VersionRow]) -> dict[str, list[tuple[VersionRow, float]]]:
    """{'host': [(row, p50)…], '<device>': […]} for rows that have an accuracy."""
    out: dict[str, list[tuple[VersionRow, float]]] = {}
    for r in rows:
        if r.accuracy is None:
            continue
        if r.host_p50_ms is not None:
            out.setdefault("host", []).append((r, r.host_p50_ms))
        for d in devices([r]):
            out.setdefault(d, []).append((r, r.device_p50_ms[d]))
    return out


def plot(rows: list[VersionRow], path: Path, title: str) -> dict[str, set[str]]:
    """Write the PNG; returns the Pareto-optimal versions of each series."""
    fig, ax = plt.subplots(figsize=(8, 5))
    sizes = [r.size_bytes or 0 for r in rows]
    biggest = max(sizes + [1])
    fronts = {}
    for index, (name, points) in enumerate(sorted(series(rows).items())):
        front = pareto_front([(r.version, lat, r.accuracy) for r, lat in points])
        fronts[name] = front
        color = f"C{index}"
        ax.scatter([lat for _, lat in points], [100 * r.accuracy for r, _ in points],
                   s=[40 + 900 * (r.size_bytes or 0) / biggest for r, _ in points], alpha=0.45, color=color, label=name)
        best = sorted(((lat, 100 * r.accuracy) for r, lat in points if r.version in front))
        if best:
            ax.plot(*zip(*best), color=color, linestyle="--", linewidth=1)
        for r, lat in points:
            star = "★" if r.version in front else ""
            ax.annotate(f"{star}v{r.version} {r.variant}", (lat, 100 * r.accuracy), fontsize=7, ha="left", va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("latency p50 (ms, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title + "\n(marker area ∝ model size, ★ / dashed: Pareto-optimal)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="measured on", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fronts
