"""Labels of points that sit together never print over each other, in both plots (rendered with Agg)."""
from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from registry_tools import compare_plot  # noqa: E402
from edge.label_layout import label_boxes, place_labels  # noqa: E402
from registry_tools.versions import VersionRow  # noqa: E402
from steps.report import Row, tradeoff_figure  # noqa: E402

# The demo's figures (README): fp32/fp16 on the same spot, int8/qat next to each other.
DEMO = [
    Row("baseline", "1", 0.9779, 0.0, 1_191_000, 1.0, None, None, None),
    Row("fp32", "2", 0.9779, 0.0, 368_000, 3.2, 0.066, 0.071, 1.00),
    Row("fp16", "3", 0.9779, 0.0, 191_000, 6.2, 0.066, 0.069, 1.00),
    Row("dynamic", "4", 0.9834, -0.55, 104_000, 11.4, 0.037, 0.039, 1.79),
    Row("int8", "5", 0.9779, 0.0, 117_000, 10.1, 0.027, 0.027, 2.46),
    Row("qat", "6", 0.9779, 0.0, 103_000, 11.5, 0.028, 0.028, 2.38),
]


def _overlapping(boxes) -> list[tuple[int, int]]:
    return [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2) if a.overlaps(b)]


def test_a_naive_layout_of_these_points_does_overlap():
    """The control: labelled the old way (text at the point), int8/qat and fp32/fp16 print over each other."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(r.p50_ms, 100 * r.accuracy) for r in DEMO if r.p50_ms]
    ax.scatter(*zip(*points))
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.annotate(f"{r.variant} ({r.size_bytes / 1e6:.2f} MB)", p, fontsize=8, ha="center", va="bottom")
             .get_window_extent(renderer) for r, p in zip([r for r in DEMO if r.p50_ms], points)]
    plt.close(fig)
    assert _overlapping(boxes)


def test_place_labels_keeps_every_label_and_none_overlap_even_on_one_spot():
    fig, ax = plt.subplots(figsize=(5, 3.5))
    points = [(1.0, 1.0)] * 6 + [(1.01, 1.0), (3.0, 2.0)]
    ax.scatter(*zip(*points), s=200)
    fig.tight_layout()
    texts = [f"label number {i}" for i in range(len(points))]
    placed = place_labels(ax, points, texts, [200.0] * len(points))
    boxes = label_boxes(ax)
    assert [a.get_text() for a in placed] == texts and len(boxes) == len(points)
    assert not _overlapping(boxes)
    plt.close(fig)


def test_tradeoff_plot_labels_do_not_overlap(tmp_path):
    fig = tradeoff_figure(DEMO, "edgeq-digits-tiny_cnn: tiny_cnn on digits, 32px")
    fig.canvas.draw()
    boxes = label_boxes(fig.axes[0])
    assert len(boxes) == 5  # every TFLite variant; the baseline has no host latency
    assert not _overlapping(boxes)
    plt.close(fig)


@pytest.mark.parametrize("devices", [0, 2])
def test_compare_plot_labels_do_not_overlap_across_series(devices):
    rows = [
        VersionRow(r.version, r.variant, "tflite" if r.p50_ms else "keras", "run", r.accuracy, r.drop_points, r.size_bytes,
                   r.p50_ms, {f"pi-{d}": r.p50_ms * (0.9 + 0.05 * d) for d in range(devices)} if r.p50_ms else {})
        for r in DEMO
    ]
    fig, fronts = compare_plot.figure(rows, "edgeq-digits-tiny_cnn")
    fig.canvas.draw()
    boxes = label_boxes(fig.axes[0])
    assert len(boxes) == 5 * (1 + devices)
    assert not _overlapping(boxes)
    assert fronts["host"] == {"4", "5"}
    plt.close(fig)
