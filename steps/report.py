"""The comparison a person opens in the MLflow UI: a table and plots of every variant."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from edge.label_layout import place_labels  # noqa: E402


@dataclass(frozen=True)
class Row:
    variant: str
    version: str
    accuracy: float
    drop_points: float
    size_bytes: int
    size_ratio: float
    p50_ms: float | None
    p90_ms: float | None
    speedup: float | None


_HEADER = ("variant", "version", "accuracy %", "drop (pts)", "size MB", "smaller ×", "p50 ms", "p90 ms", "faster ×")


def _cells(row: Row) -> tuple[str, ...]:
    def fmt(value: float | None, spec: str) -> str:
        return "—" if value is None else format(value, spec)

    return (
        row.variant,
        row.version,
        f"{100 * row.accuracy:.2f}",
        f"{row.drop_points:+.2f}",
        f"{row.size_bytes / 1e6:.3f}",
        f"{row.size_ratio:.1f}",
        fmt(row.p50_ms, ".3f"),
        fmt(row.p90_ms, ".3f"),
        fmt(row.speedup, ".2f"),
    )


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def html_table(rows: list[Row], title: str) -> str:
    head = "".join(f"<th>{h}</th>" for h in _HEADER)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    return (
        f"<html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>td,th{padding:4px 10px;text-align:right;font-family:sans-serif}</style></head>"
        f"<body><h3>{title}</h3><table border=1 cellspacing=0><tr>{head}</tr>{body}</table></body></html>"
    )


def tradeoff_figure(rows: list[Row], title: str):
    """Accuracy against host latency; marker area proportional to model size; labels never overlap."""
    rows = [r for r in rows if r.p50_ms is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = np.array([r.size_bytes for r in rows], dtype=float)
    areas = 60 + 1200 * sizes / max(sizes.max(initial=0.0), 1.0)
    points = [(r.p50_ms, 100 * r.accuracy) for r in rows]
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=areas, alpha=0.5)
    ax.margins(0.15, 0.2)
    ax.set_xlabel("host latency p50 (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    place_labels(ax, points, [f"{r.variant} ({r.size_bytes / 1e6:.2f} MB)" for r in rows], list(areas), fontsize=8)
    return fig


def tradeoff_plot(rows: list[Row], path: Path, title: str) -> Path:
    fig = tradeoff_figure(rows, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


CONFUSION_NUMBERED = 30
CONFUSION_NAMED = 60


def confusion_plot(matrix: np.ndarray, labels: list[str], path: Path, title: str) -> Path:
    """Counts in the cells up to CONFUSION_NUMBERED classes, names up to CONFUSION_NAMED; past those a heat map whose
    size stops growing (1,000 classes drawn cell by cell needed gigabytes; confusion_matrix.json has every count)."""
    side = min(len(labels), CONFUSION_NAMED)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * side, 1 + 0.45 * side))
    ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    if len(labels) <= CONFUSION_NAMED:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
    if len(labels) <= CONFUSION_NUMBERED:
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
