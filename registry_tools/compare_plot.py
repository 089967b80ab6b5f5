"""Accuracy against latency for every version, per device, with the Pareto front marked."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from edge.label_layout import place_labels  # noqa: E402
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


def figure(rows: list[VersionRow], title: str):
    """The figure and the Pareto-optimal versions of each series (labels placed so none overlap)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    sizes = [r.size_bytes or 0 for r in rows]
    biggest = max(sizes + [1])
    fronts = {}
    points, texts, areas, colors = [], [], [], []
    for index, (name, measured) in enumerate(sorted(series(rows).items())):
        front = pareto_front([(r.version, lat, r.accuracy) for r, lat in measured])
        fronts[name] = front
        color = f"C{index}"
        marker_areas = [40 + 900 * (r.size_bytes or 0) / biggest for r, _ in measured]
        ax.scatter([lat for _, lat in measured], [100 * r.accuracy for r, _ in measured],
                   s=marker_areas, alpha=0.45, color=color, label=name)
        best = sorted(((lat, 100 * r.accuracy) for r, lat in measured if r.version in front))
        if best:
            ax.plot(*zip(*best), color=color, linestyle="--", linewidth=1)
        for (r, lat), area in zip(measured, marker_areas):
            points.append((lat, 100 * r.accuracy))
            texts.append(f"{'★' if r.version in front else ''}v{r.version} {r.variant}")
            areas.append(area)
            colors.append(color)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.margins(0.12, 0.18)
    ax.set_xlabel("latency p50 (ms, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title + "\n(marker area ∝ model size, ★ / dashed: Pareto-optimal)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if points:
        ax.legend(title="measured on", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    place_labels(ax, points, texts, areas, fontsize=7, colors=colors)
    return fig, fronts


def plot(rows: list[VersionRow], path: Path, title: str) -> dict[str, set[str]]:
    """Write the PNG; returns the Pareto-optimal versions of each series."""
    fig, fronts = figure(rows, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fronts
