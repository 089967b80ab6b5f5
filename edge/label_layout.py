"""Point labels that never print over each other: each is tried around its point, measured, and kept where it is free.

Used by both plots (``edgeq compare`` and the pipeline's ``tradeoff.png``), so it lives in edge/, the
lightest part both steps/ and registry_tools/ may import; it needs matplotlib, which only those two
install: nothing a device runs imports it. Call it after the
figure's layout is final (``tight_layout``): offsets are in points, so a later change of
axes size would move the points under the labels.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox

# Directions tried around a point, nearest-looking first: right, up, left, down, then the diagonals.
_DIRECTIONS = ((1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
_HA = {1: "left", 0: "center", -1: "right"}
_VA = {1: "bottom", 0: "center", -1: "top"}
_RINGS = 8


def _marker_box(ax: Axes, x: float, y: float, size_pt2: float) -> Bbox:
    cx, cy = ax.transData.transform((x, y))
    half = math.sqrt(size_pt2) / 2 * ax.figure.dpi / 72
    return Bbox.from_extents(cx - half, cy - half, cx + half, cy + half)


def label_boxes(ax: Axes) -> list[Bbox]:
    """Window extents of the labels placed by ``place_labels`` on ``ax`` (what a test checks)."""
    renderer = ax.figure.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in ax.texts if isinstance(t, Annotation) and t.get_gid() == "edgeq-label"]


def place_labels(ax: Axes, points: Sequence[tuple[float, float]], texts: Sequence[str],
                 marker_sizes: Sequence[float] | None = None, fontsize: float = 8, pad_px: float = 2.0,
                 colors: Sequence[str] | None = None) -> list[Annotation]:
    """Annotate each point with its text where it overlaps no other label (and, if possible, no marker),
    inside the axes if possible; a label moved away from its point gets a thin leader line."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    sizes = list(marker_sizes) if marker_sizes is not None else [36.0] * len(points)
    markers = [_marker_box(ax, x, y, s) for (x, y), s in zip(points, sizes)]
    inside = ax.get_window_extent(renderer)
    taken: list[Bbox] = []
    placed = []
    for (x, y), text, size, color in zip(points, texts, sizes, colors or ["black"] * len(points)):
        start = math.sqrt(size) / 2 + 2  # points: clear of the point's own marker
        step = fontsize * 1.1
        # Strict first (free of labels and markers, inside the axes), then looser: never over another label.
        for strict_markers, strict_inside in ((True, True), (False, True), (False, False)):
            found = _first_free(ax, renderer, (x, y), text, fontsize, start, step, taken,
                                markers if strict_markers else [], inside if strict_inside else None, pad_px)
            if found:
                break
        if found is None:  # everything within reach is taken: keep the farthest try rather than drop the label
            found = _try(ax, renderer, (x, y), text, fontsize, start + _RINGS * step, (1, 0))
        annotation, box, offset = found
        taken.append(box.expanded(1, 1).padded(pad_px))
        if math.hypot(*offset) > start + 0.5:
            ax.annotate("", (x, y), xytext=offset, textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "color": color, "alpha": 0.6, "lw": 0.6, "shrinkA": 0, "shrinkB": 2})
        annotation.set_color(color)
        placed.append(annotation)
    return placed


def _try(ax: Axes, renderer, xy: tuple[float, float], text: str, fontsize: float, radius: float,
         direction: tuple[int, int]) -> tuple[Annotation, Bbox, tuple[float, float]]:
    dx, dy = direction
    norm = math.hypot(dx, dy)
    offset = (radius * dx / norm, radius * dy / norm)
    annotation = ax.annotate(text, xy, xytext=offset, textcoords="offset points", fontsize=fontsize,
                             ha=_HA[dx], va=_VA[dy], gid="edgeq-label")
    return annotation, annotation.get_window_extent(renderer), offset


def _first_free(ax: Axes, renderer, xy: tuple[float, float], text: str, fontsize: float, start: float, step: float,
                taken: list[Bbox], obstacles: list[Bbox], inside: Bbox | None, pad_px: float):
    for ring in range(_RINGS):
        for direction in _DIRECTIONS:
            annotation, box, offset = _try(ax, renderer, xy, text, fontsize, start + ring * step, direction)
            padded = box.padded(pad_px)
            free = not any(padded.overlaps(b) for b in taken) and not any(padded.overlaps(m) for m in obstacles)
            within = inside is None or (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1)
            if free and within:
                return annotation, box, offset
            annotation.remove()
    return None
